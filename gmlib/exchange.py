"""Synthetic sets in the file layouts of the source papers' public code, read and written.

A reader can evaluate a set made by another implementation under gmlib's protocol, or hand one of
gmlib's sets to the authors' evaluation, without conversion scripts:

- ``"dc"``: the results file of DC's, DSA's and DM's code (``res_<...>_<ipc>ipc.pt``): a dict
  ``{"data": [[images, labels], ...], "accs_all_exps": {network: [accuracy, ...]}}`` with one
  ``[images, labels]`` pair per experiment (distillation run) and the accuracies the authors'
  evaluation measured at the end;
- ``"mtt"``: the folder MTT's code logs into: ``images_<tag>.pt``, ``labels_<tag>.pt`` and the
  learned learning rate ``lr_<tag>.pt``, where the tag is ``best`` or an iteration number.

Both keep the images in the dataset's normalised space with the per-channel mean and std that
gmlib's catalogue also uses (they come from the same code), so the pixels are taken as they are.
Neither records which dataset a set belongs to, so reading one needs the dataset's name. Sets that
MTT's code made with ``--zca`` are in a whitened space gmlib does not use and read as noise here.
Labels must be hard class labels with the same number of images for every class; a set whose
labels are not in class order is put in class order (stably), since gmlib keeps class ``c`` as one
contiguous slice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gmlib.fileio import atomic_torch_save
from gmlib.synthetic import (
    SyntheticFileError,
    SyntheticSet,
    class_ordered_labels,
    load_synthetic,
    save_synthetic,
)

FORMATS = ("gmlib", "dc", "mtt")
_DC_METHODS = ("dc", "dsa", "dm")  # what a DC-layout results file can hold, by the code that wrote it


def _dataset_facts(dataset: Any) -> Any:
    """A dataset's name, shapes, classes and normalisation: a name (from the catalogue), or an object
    that has them (a :class:`gmlib.data.DatasetInfo` or a loaded :class:`gmlib.data.ImageDataset`)."""
    if isinstance(dataset, str):
        from gmlib.data import dataset_info

        return dataset_info(dataset)
    return dataset


def _numpy_data_types() -> list[Any]:
    """The numpy reconstructors and types that plain numbers and arrays pickle as: the authors' code
    saves accuracies as numpy scalars. They hold data only, so a weights-only load may accept them."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    types = [np.dtype, np.ndarray, core.multiarray.scalar, core.multiarray._reconstruct]
    types += [kind for kind in vars(getattr(np, "dtypes", object)).values() if isinstance(kind, type)]
    return types


def _load_plain(path: Path) -> Any:
    """``torch.load`` of a file of tensors, containers and numbers (no code is unpickled)."""
    try:
        with torch.serialization.safe_globals(_numpy_data_types()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, foreign objects and non-zip files fail differently
        raise SyntheticFileError(f"could not read {path} as tensors and numbers: {type(error).__name__}: "
                                 f"{str(error).splitlines()[0]}") from error


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_synthetic(images: Any, labels: Any, facts: Any, where: str, metadata: dict) -> SyntheticSet:
    """A gmlib set from foreign ``images`` and hard ``labels``, checked against the dataset and put
    in class order; ``where`` names the source in errors."""
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise SyntheticFileError(f"{where}: images must be a float tensor (N, C, H, W), got {got}")
    wanted_shape = (facts.channels, *facts.im_size)
    if tuple(images.shape[1:]) != wanted_shape:
        raise SyntheticFileError(f"{where}: images are {tuple(images.shape[1:])}, but {facts.name} images are "
                                 f"{wanted_shape}; is this a set of another dataset?")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(images):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise SyntheticFileError(f"{where}: labels must be {len(images)} integer class indices (hard labels; soft "
                                 f"labels are not supported), got {got}")
    labels = labels.long()
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= facts.num_classes:
        raise SyntheticFileError(f"{where}: labels must lie in 0..{facts.num_classes - 1} ({facts.name} has "
                                 f"{facts.num_classes} classes)")
    counts = torch.bincount(labels, minlength=facts.num_classes)
    if not bool((counts == counts[0]).all()):
        raise SyntheticFileError(f"{where}: every class needs the same number of images; counts per class "
                                 f"{counts.tolist()}")
    ipc = int(counts[0])
    order = torch.sort(labels, stable=True).indices  # class order, keeping each class's own order
    return SyntheticSet(images[order].detach().float().clone(), class_ordered_labels(facts.num_classes, ipc), ipc,
                        facts.num_classes, facts.mean, facts.std, list(facts.class_names), facts.name, metadata)


def _guess_dc_method(path: Path) -> str:
    """DSA's and DM's code name their results res_DSA_... and res_DM_...; DC's has no method."""
    parts = path.stem.lower().split("_")
    return parts[1] if len(parts) > 1 and parts[0] == "res" and parts[1] in ("dsa", "dm") else "dc"


def read_dc_results(path: str | os.PathLike, dataset: Any, *, experiment: int = 0,
                    method: str | None = None) -> SyntheticSet:
    """Set ``experiment`` (0-based) of a results file of DC's, DSA's or DM's code, for ``dataset``.

    ``method`` (dc, dsa or dm) is the code that made it, which decides the augmentation of the
    papers' evaluation; by default it is read from the file name (``res_DSA_...``, ``res_DM_...``,
    else dc). The accuracies the file reports are kept in ``metadata['source']['reported']``.
    """
    path, facts = Path(path), _dataset_facts(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    method = _guess_dc_method(path) if method is None else method
    if method not in _DC_METHODS:
        raise ValueError(f"method {method!r} is not one whose code writes this layout; choose from {_DC_METHODS}")
    payload = _load_plain(path)
    runs = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(runs, (list, tuple)) or not runs:
        raise SyntheticFileError(f"{path} is not a results file of DC's, DSA's or DM's code: expected a dict whose "
                                 "'data' is a non-empty list of [images, labels] pairs")
    if not isinstance(experiment, int) or isinstance(experiment, bool) or not 0 <= experiment < len(runs):
        raise ValueError(f"experiment {experiment!r} is not in {path}, which holds experiments 0..{len(runs) - 1}")
    pair = runs[experiment]
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise SyntheticFileError(f"{path}: experiment {experiment} is not an [images, labels] pair")
    reported = {str(network): [float(a) for a in accuracies]
                for network, accuracies in dict(payload.get("accs_all_exps") or {}).items()}
    source = {"format": "dc", "file": str(path), "sha256": _file_sha256(path), "experiment": experiment,
              "experiments": len(runs), "reported": reported}
    return _as_synthetic(pair[0], pair[1], facts, f"{path} experiment {experiment}",
                         {"method": method, "source": source})


def write_dc_results(sets: SyntheticSet | Sequence[SyntheticSet], path: str | os.PathLike, *,
                     accuracies: dict[str, Sequence[float]] | None = None) -> Path:
    """Write ``sets`` (one per experiment) as DC's code saves its results, with ``accuracies``
    (network name -> accuracies in [0, 1]) as its ``accs_all_exps``; returns the path written."""
    sets = [sets] if isinstance(sets, SyntheticSet) else list(sets)
    if not sets or not all(isinstance(s, SyntheticSet) for s in sets):
        raise ValueError("write_dc_results needs one or more SyntheticSets")
    payload = {"data": [[s.images.detach().cpu().clone(), s.labels.cpu().clone()] for s in sets],
               "accs_all_exps": {str(k): [float(a) for a in v] for k, v in (accuracies or {}).items()}}
    return atomic_torch_save(payload, Path(path))


def _mtt_paths(folder: Path, tag: str) -> dict[str, Path]:
    return {kind: folder / f"{kind}_{tag}.pt" for kind in ("images", "labels", "lr")}


def read_mtt_set(folder: str | os.PathLike, dataset: Any, *, tag: str = "best") -> SyntheticSet:
    """The set MTT's code logged into ``folder`` under ``tag`` ('best' or an iteration number) for
    ``dataset``; its learned learning rate (when ``lr_<tag>.pt`` is there) becomes
    ``metadata['learned_lr']``, which MTT's own protocol trains with."""
    folder, facts = Path(folder), _dataset_facts(dataset)
    paths = _mtt_paths(folder, str(tag))
    for kind in ("images", "labels"):
        if not paths[kind].is_file():
            present = sorted(p.name for p in folder.glob("images_*.pt")) if folder.is_dir() else []
            raise FileNotFoundError(f"no {paths[kind].name} in {folder}; image files there: "
                                    f"{', '.join(present) or 'none'}")
    metadata: dict[str, Any] = {"method": "mtt"}
    if paths["lr"].is_file():
        lr = _load_plain(paths["lr"])
        if isinstance(lr, Tensor) and lr.numel() == 1:
            lr = lr.item()
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise SyntheticFileError(f"{paths['lr']} must hold one positive learning rate, got {lr!r}")
        metadata["learned_lr"] = float(lr)
    metadata["source"] = {"format": "mtt", "folder": str(folder), "tag": str(tag),
                          "sha256": {kind: _file_sha256(p) for kind, p in paths.items() if p.is_file()}}
    return _as_synthetic(_load_plain(paths["images"]), _load_plain(paths["labels"]), facts,
                         f"{folder} ({paths['images'].name})", metadata)


def write_mtt_set(syn: SyntheticSet, folder: str | os.PathLike, *, tag: str = "best") -> Path:
    """Write ``syn`` into ``folder`` as MTT's code logs a set (images, labels and, when the set has
    one, its learned learning rate); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = _mtt_paths(folder, str(tag))
    atomic_torch_save(syn.images.detach().cpu().clone(), paths["images"])
    atomic_torch_save(syn.labels.cpu().clone(), paths["labels"])
    if "learned_lr" in syn.metadata:
        atomic_torch_save(torch.tensor(float(syn.metadata["learned_lr"]), dtype=torch.float64), paths["lr"])
    return folder


def detect_format(path: str | os.PathLike) -> str:
    """'mtt' for a folder, 'gmlib' for a file written by :func:`gmlib.synthetic.save_synthetic`,
    else 'dc'."""
    path = Path(path)
    if path.is_dir():
        return "mtt"
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic set at {path}")
    payload = _load_plain(path)
    return "gmlib" if isinstance(payload, dict) and payload.get("format") == "gmlib.synthetic" else "dc"


def read_set(path: str | os.PathLike, dataset: Any = None, *, format: str = "auto", experiment: int = 0,
             tag: str = "best", method: str | None = None) -> SyntheticSet:
    """A synthetic set from ``path`` in any of :data:`FORMATS` ('auto': :func:`detect_format`).
    The foreign formats need ``dataset`` (a name); gmlib's own files know theirs."""
    if format not in ("auto",) + FORMATS:
        raise ValueError(f"format {format!r} is not one of: auto, {', '.join(FORMATS)}")
    format = detect_format(path) if format == "auto" else format
    if format == "gmlib":
        return load_synthetic(path)
    if dataset is None:
        raise ValueError(f"{path} is in the {format} layout, which does not record its dataset; name it "
                         "(for example dataset='mnist')")
    if format == "dc":
        return read_dc_results(path, dataset, experiment=experiment, method=method)
    return read_mtt_set(path, dataset, tag=tag)


def write_set(syn: SyntheticSet, path: str | os.PathLike, format: str) -> Path:
    """Write ``syn`` to ``path`` in ``format`` (one of :data:`FORMATS`; gmlib's own file keeps the
    set's metadata, the foreign layouts only what they hold)."""
    if format == "gmlib":
        return save_synthetic(syn, path)
    if format == "dc":
        return write_dc_results(syn, path)
    if format == "mtt":
        return write_mtt_set(syn, path)
    raise ValueError(f"format {format!r} is not one of: {', '.join(FORMATS)}")
