"""The expert buffer of trajectory matching (MTT) on disk: its format, writing it, reading it verified.

:func:`gmlib.methods.mtt_experts.train_experts` trains the experts; this module keeps what they
leave behind honest:

* **one file per expert** (``expert_000.pt``, ...): the snapshots as ONE ``(snapshots, P)`` flat
  tensor in the storage dtype (float32, or float16 for half the disk), the epochs they were taken
  at, the per-epoch test accuracy and a SHA-256 of the tensor. Written atomically when the expert
  is finished, so a stop loses at most the expert in training; rerunning
  :func:`gmlib.methods.mtt_experts.train_experts` verifies and keeps every finished expert;
* **manifest.json**: everything a reader of the buffer needs to trust it (format and version,
  dataset, classes, image shape, network and keywords, the parameter names and shapes in
  ``parameters()`` order, epochs and the kept ones, optimiser, augmentation, seed, storage dtype,
  gmlib version and git commit, each expert's accuracies, file checksum and size);
* :func:`load_buffer` verifies every checksum and refuses a buffer made for another dataset,
  network, set of network keywords or image shape, naming both values.

Snapshot ``k`` of every expert is the parameters after epoch ``k * every`` (snapshot 0 is the
initialisation).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from gmlib.checks import check_int
from gmlib.data import ImageDataset
from gmlib.fileio import atomic_torch_save, atomic_write_text, json_ready
from gmlib.networks import filter_network_kwargs
from gmlib.synthetic import tensor_sha256

__all__ = ["BUFFER_FORMAT", "BUFFER_VERSION", "ExpertBuffer", "MANIFEST_NAME", "expert_file_name", "load_buffer"]

BUFFER_FORMAT = "gmlib.mtt.expert-buffer"
BUFFER_VERSION = 1
MANIFEST_NAME = "manifest.json"


def expert_file_name(index: int) -> str:
    return f"expert_{index:03d}.pt"


# --------------------------------------------------------------------------------------------
# The files: one per expert, and the manifest
# --------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_expert(path: Path, record: dict[str, Any], index: int, settings: dict[str, Any]) -> None:
    """Write one expert's file atomically (with a checksum of its snapshots and the buffer's settings)."""
    atomic_torch_save({"format": BUFFER_FORMAT + ".expert", "version": BUFFER_VERSION, "index": index,
                       "settings": settings, "snapshots_sha256": tensor_sha256(record["snapshots"]), **record}, path)


def read_expert(path: Path) -> dict[str, Any]:
    """An expert file's contents, its snapshots checked against their stored checksum."""
    if not path.is_file():
        raise ValueError(f"the expert file {path} is missing; the buffer is incomplete (rerun train_experts "
                         f"with the same settings to finish it)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a zip archive, foreign pickle
        raise ValueError(f"the expert file {path} is corrupt: {type(error).__name__}: {error}") from error
    if not isinstance(record, dict) or record.get("format") != BUFFER_FORMAT + ".expert":
        raise ValueError(f"{path} is not a gmlib expert file")
    if tensor_sha256(record["snapshots"]) != record["snapshots_sha256"]:
        raise ValueError(f"the snapshots in {path} do not match their stored checksum: the file is corrupt")
    return record


def finished_expert(path: Path, index: int, settings: dict[str, Any]) -> bool:
    """Whether ``path`` holds expert ``index`` of a buffer with ``settings``, intact."""
    try:
        record = read_expert(path)
    except ValueError:
        return False
    return record["index"] == index and record["settings"] == settings


def write_manifest(folder: Path, settings: dict[str, Any], records: Sequence[dict], experts_planned: int) -> dict:
    """Write ``manifest.json`` for the experts finished so far (``complete`` once all
    ``experts_planned`` are)."""
    from gmlib import __version__
    from gmlib.runinfo import git_commit

    commit, dirty = git_commit()
    experts = []
    for index, record in enumerate(records):
        path = folder / expert_file_name(index)
        experts.append({"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                        "test_accuracy": record["test_accuracy"]})
    manifest = json_ready({
        "format": BUFFER_FORMAT, "version": BUFFER_VERSION, **settings,
        "experts_planned": experts_planned, "complete": len(experts) == experts_planned,
        "snapshots_per_expert": len(settings["kept_epochs"]),
        "num_parameters": sum(_numel(p["shape"]) for p in settings["parameters"]),
        "gmlib_version": __version__, "git_commit": commit, "git_dirty": dirty,
        "experts": experts, "size_bytes": sum(e["bytes"] for e in experts),
    })
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{folder} is not an expert buffer: it has no {MANIFEST_NAME} (build one with "
                         f"train_experts or `python -m gmlib experts`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != BUFFER_FORMAT:
        raise ValueError(f"{path} is not a gmlib expert-buffer manifest")
    if manifest.get("version") != BUFFER_VERSION:
        raise ValueError(f"{path} has buffer format version {manifest.get('version')!r}; this gmlib reads version "
                         f"{BUFFER_VERSION}: rebuild the buffer")
    return manifest


def check_same_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to continue a buffer in ``folder`` made with other settings, naming them."""
    if not (folder / MANIFEST_NAME).is_file():
        return
    saved = read_manifest(folder)
    differences = [f"{key}={saved.get(key)!r} there, {settings[key]!r} here"
                   for key in settings if saved.get(key) != settings[key]]
    if differences:
        raise ValueError(f"{folder} holds a buffer of other settings: " + "; ".join(differences)
                         + ". Use the same settings and seed, or another folder.")


# --------------------------------------------------------------------------------------------
# Reading a buffer
# --------------------------------------------------------------------------------------------


class ExpertBuffer:
    """A verified buffer: its manifest, and each expert's snapshots (read on first use, then kept in
    memory: the whole buffer's :attr:`size_bytes` at most)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest
        self._experts: dict[int, Tensor] = {}

    @property
    def num_experts(self) -> int:
        return len(self.manifest["experts"])

    @property
    def kept_epochs(self) -> list[int]:
        """The epoch of each snapshot: snapshot k is the parameters after epoch ``kept_epochs[k]``."""
        return list(self.manifest["kept_epochs"])

    @property
    def num_snapshots(self) -> int:
        return len(self.manifest["kept_epochs"])

    @property
    def num_parameters(self) -> int:
        return int(self.manifest["num_parameters"])

    @property
    def parameter_names(self) -> list[str]:
        return [p["name"] for p in self.manifest["parameters"]]

    @property
    def parameter_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(p["shape"]) for p in self.manifest["parameters"]]

    @property
    def network_kwargs(self) -> dict[str, Any]:
        return dict(self.manifest["network_kwargs"])

    @property
    def size_bytes(self) -> int:
        """The experts' files on disk, in bytes."""
        return int(self.manifest["size_bytes"])

    @property
    def identity(self) -> str:
        """A SHA-256 over the buffer's settings and its experts' checksums: equal for equal buffers
        (a checkpoint of a run on another buffer is refused by it)."""
        content = {"settings": {k: self.manifest[k] for k in ("dataset", "network", "network_kwargs", "parameters",
                                                              "kept_epochs", "seed", "storage_dtype")},
                   "experts": [e["sha256"] for e in self.manifest["experts"]]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        """One line: experts, snapshots, parameters, storage dtype and the size on disk."""
        m = self.manifest
        return (f"{self.num_experts} experts x {self.num_snapshots} snapshots (epochs {self.kept_epochs[0]}.."
                f"{self.kept_epochs[-1]} every {m['every']}) x {self.num_parameters:,} parameters of "
                f"{m['network']} {self.network_kwargs} in {m['storage_dtype']}: {self.size_bytes / 2**20:.2f} MiB "
                f"on disk ({self.size_bytes / max(self.num_experts, 1) / 2**20:.2f} MiB per expert)")

    def print_size(self) -> None:
        """Print :meth:`describe`."""
        print(self.describe())

    def __repr__(self) -> str:
        return f"ExpertBuffer({str(self.folder)!r}: {self.describe()})"

    def test_accuracy(self, expert: int) -> list[float]:
        """Expert ``expert``'s test accuracy after each epoch."""
        return list(self.manifest["experts"][expert]["test_accuracy"])

    def expert(self, index: int) -> Tensor:
        """All snapshots of expert ``index``: a (snapshots, P) tensor in the storage dtype, on the CPU."""
        check_int("expert index", index, 0)
        if index >= self.num_experts:
            raise ValueError(f"expert {index} does not exist; the buffer has experts 0..{self.num_experts - 1}")
        if index not in self._experts:
            self._experts[index] = read_expert(self.folder / expert_file_name(index))["snapshots"]
        return self._experts[index]

    def snapshot(self, expert: int, k: int, device: str | torch.device = "cpu") -> Tensor:
        """Snapshot ``k`` (the parameters after epoch ``kept_epochs[k]``) of ``expert``: a flat
        float32 vector on ``device``."""
        snapshots = self.expert(expert)
        if not 0 <= k < len(snapshots):
            raise ValueError(f"snapshot {k} does not exist; experts have snapshots 0..{len(snapshots) - 1}")
        return snapshots[k].to(device, torch.float32)

    def check_matches(self, dataset: ImageDataset | None = None, network: str | None = None,
                      network_kwargs: Mapping[str, Any] | None = None) -> None:
        """Refuse (ValueError naming both values) a dataset (name, classes, image shape), network or
        network keywords other than the buffer's; None skips a check."""
        m, folder = self.manifest, self.folder
        if dataset is not None:
            _refuse_mismatch(folder, "dataset", m["dataset"], dataset.name)
            _refuse_mismatch(folder, "number of classes", m["num_classes"], dataset.num_classes)
            _refuse_mismatch(folder, "image shape", m["image_shape"], [dataset.channels, *dataset.im_size])
        if network is not None:
            _refuse_mismatch(folder, "network", m["network"], network)
        if network_kwargs is not None:
            wanted = json_ready(filter_network_kwargs(network or m["network"], dict(network_kwargs)))
            _refuse_mismatch(folder, "network keywords", m["network_kwargs"], wanted)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """The parameters by name, as views of ``flat`` (gradients flow through them)."""
        sizes = [_numel(shape) for shape in self.parameter_shapes]
        return {name: piece.view(shape) for name, piece, shape
                in zip(self.parameter_names, flat.split(sizes), self.parameter_shapes)}


def _refuse_mismatch(folder: Path, what: str, stored: Any, wanted: Any) -> None:
    if stored != wanted:
        raise ValueError(f"the buffer {folder} was trained for {what} {stored!r}, not {wanted!r}: use a buffer "
                         f"built for {wanted!r} (or the settings the buffer was built with)")


def load_buffer(path: str | os.PathLike, dataset: ImageDataset | None = None, network: str | None = None,
                network_kwargs: Mapping[str, Any] | None = None) -> ExpertBuffer:
    """The buffer in ``path``, every expert file verified against the manifest's SHA-256.

    With ``dataset`` (its name, classes and image shape), ``network`` and ``network_kwargs``, a
    buffer made for anything else is refused with a ValueError naming both values. A missing or
    corrupt file, or an unfinished buffer, is a ValueError naming the file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"no expert buffer at {folder}: build one with train_experts or `python -m gmlib experts`")
    manifest = read_manifest(folder)
    if not manifest["complete"]:
        raise ValueError(f"the buffer {folder} is unfinished ({len(manifest['experts'])} of "
                         f"{manifest['experts_planned']} experts): rerun train_experts with the same settings")
    for entry in manifest["experts"]:
        file = folder / entry["file"]
        if not file.is_file():
            raise ValueError(f"the expert file {file} listed in the manifest is missing")
        if file_sha256(file) != entry["sha256"]:
            raise ValueError(f"the expert file {file} does not match its checksum in the manifest: it is corrupt "
                             f"or was modified")
    buffer = ExpertBuffer(folder, manifest)
    buffer.check_matches(dataset, network, network_kwargs)
    return buffer
