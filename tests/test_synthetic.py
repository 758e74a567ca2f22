"""The synthetic set: initialisations, learnability, save/load with provenance (tiny fake data)."""

import os
import re
import subprocess
from pathlib import Path

import numpy
import pytest
import torch

import gmlib
from gmlib.data import ImageDataset
from gmlib.synthetic import (
    CLASS_MEAN_JITTER,
    FORMAT_VERSION,
    INIT_NAMES,
    SyntheticFileError,
    SyntheticSet,
    init_synthetic,
    load_synthetic,
    save_synthetic,
)
from gmlib.runinfo import make_provenance

MEAN, STD = (0.2, 0.5, 0.7), (0.1, 0.25, 0.4)
CLASS_SIZES = (4, 5, 3)  # uneven on purpose: class 2 is the smallest


def tiny_dataset() -> ImageDataset:
    """3 classes of 3x4x4 images with distinct per-channel mean/std (normalised like real data)."""
    gen = torch.Generator().manual_seed(123)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(CLASS_SIZES)])
    labels = labels[torch.randperm(len(labels), generator=gen)]  # interleaved, as in real data
    pixels = torch.rand(len(labels), 3, 4, 4, generator=gen)
    mean, std = torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1)
    images = (pixels - mean) / std
    return ImageDataset("tiny", images, labels, images[:3], labels[:3], MEAN, STD, ["a", "b", "c"])


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    return tiny_dataset()


# ---------------------------------------------------------------------------------------------
# Shapes, labels, every init
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", INIT_NAMES)
def test_every_init_gives_learnable_class_ordered_set(data, init):
    syn = init_synthetic(data, 2, init, seed=0)
    assert syn.images.shape == (6, 3, 4, 4) and syn.images.dtype == torch.float32
    assert syn.labels.dtype == torch.int64 and syn.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert syn.images.is_leaf and syn.images.requires_grad
    assert (syn.ipc, syn.num_classes, syn.dataset) == (2, 3, "tiny")
    assert syn.mean == MEAN and syn.std == STD and syn.class_names == ["a", "b", "c"]
    assert syn.metadata["init"] == init and syn.metadata["seed"] == 0


@pytest.mark.parametrize("init, pixel", [("black", 0.0), ("white", 1.0), ("gray", 0.5)])
def test_constant_inits_are_the_normalised_pixel_per_channel(data, init, pixel):
    syn = init_synthetic(data, 3, init)
    for channel, (m, s) in enumerate(zip(MEAN, STD)):
        expected = torch.full((9, 4, 4), (pixel - m) / s)
        torch.testing.assert_close(syn.images[:, channel].detach(), expected)
    torch.testing.assert_close(syn.pixels(), torch.full((9, 3, 4, 4), pixel))


def test_real_init_picks_distinct_training_images_of_the_right_class(data):
    syn = init_synthetic(data, 3, "real", seed=1)
    for c in range(3):
        pool = data.train_images[data.class_indices(c)].flatten(1)
        rows = []
        for image in syn.class_images(c).detach():
            matches = (pool == image.flatten()).all(dim=1).nonzero().flatten().tolist()
            assert len(matches) == 1, f"a class-{c} synthetic image is not one of class {c}'s training images"
            rows.append(matches[0])
        assert len(set(rows)) == 3, "real init drew one image twice"


def test_class_mean_init_is_the_class_mean(data):
    single = init_synthetic(data, 1, "class-mean")
    for c in range(3):
        class_mean = data.train_images[data.class_indices(c)].mean(0)
        torch.testing.assert_close(single.class_images(c)[0].detach(), class_mean)
    # ipc > 1: copies differ by a tiny jitter (else they would get identical gradients forever)
    several = init_synthetic(data, 3, "class-mean", seed=0)
    assert several.metadata["jitter"] == CLASS_MEAN_JITTER
    copies = several.class_images(1).detach()
    class_mean = data.train_images[data.class_indices(1)].mean(0)
    assert (copies - class_mean).abs().max() < 10 * CLASS_MEAN_JITTER
    assert not torch.equal(copies[0], copies[1])
    exact = init_synthetic(data, 3, "class-mean", jitter=0.0)
    assert torch.equal(exact.class_images(1)[0], exact.class_images(1)[2])


def test_noise_init_is_standard_normal_in_normalised_space(data):
    syn = init_synthetic(data, 50, "noise", seed=0)  # 7200 values
    values = syn.images.detach()
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05


@pytest.mark.parametrize("init", ["noise", "real"])
def test_seeded_determinism(data, init):
    first, again = init_synthetic(data, 2, init, seed=7), init_synthetic(data, 2, init, seed=7)
    other = init_synthetic(data, 2, init, seed=8)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)
    from_generator = init_synthetic(data, 2, init, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.images, from_generator.images)


# ---------------------------------------------------------------------------------------------
# Learnability and the container's methods
# ---------------------------------------------------------------------------------------------


def test_gradients_flow_through_class_images(data):
    syn = init_synthetic(data, 2, "noise")
    (syn.class_images(1) ** 2).sum().backward()
    grad = syn.images.grad
    torch.testing.assert_close(grad[2:4], 2 * syn.images.detach()[2:4])
    assert grad[:2].abs().sum() == 0 and grad[4:].abs().sum() == 0
    # an optimiser updates the set in place
    before = syn.images.detach().clone()
    torch.optim.SGD([syn.images], lr=0.1).step()
    assert not torch.equal(before, syn.images.detach())


def test_detached_pixels_clone_and_to_are_independent_copies(data):
    syn = init_synthetic(data, 1, "noise")
    images, labels = syn.detached()
    assert not images.requires_grad and torch.equal(images, syn.images.detach())
    images += 1  # does not touch the set
    assert not torch.equal(images, syn.images.detach())
    pixels = syn.pixels()
    assert pixels.min() >= 0 and pixels.max() <= 1 and not pixels.requires_grad
    for copy in (syn.clone(), syn.to("cpu")):
        assert copy.images.is_leaf and copy.images.requires_grad
        assert torch.equal(copy.images, syn.images) and copy.images.data_ptr() != syn.images.data_ptr()
        copy.metadata["init"] = "changed"
        assert syn.metadata["init"] == "noise"
    assert "tiny" in repr(syn) and "3 classes x 1 images" in repr(syn)


def test_container_rejects_inconsistent_parts():
    images = torch.zeros(4, 1, 2, 2)
    with pytest.raises(ValueError, match=r"images must be a float tensor \(6, C, H, W\)"):
        SyntheticSet(images, torch.tensor([0, 0, 1, 1, 2, 2]), 2, 3, (0.0,), (1.0,), ["a", "b", "c"], "x")
    with pytest.raises(ValueError, match="class-ordered"):
        SyntheticSet(images, torch.tensor([0, 1, 0, 1]), 2, 2, (0.0,), (1.0,), ["a", "b"], "x")
    plain = SyntheticSet(images, torch.tensor([0, 0, 1, 1]), 2, 2, (0.0,), (1.0,), ["a", "b"], "x")
    assert plain.images.is_leaf and plain.images.requires_grad and not images.requires_grad
    with pytest.raises(ValueError, match="class index 2 is out of range; classes are 0..1"):
        plain.class_images(2)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ipc", [0, -1, 1.5, "2", True])
def test_bad_ipc(data, ipc):
    with pytest.raises(ValueError, match=re.escape(f"images per class must be an integer >= 1, got {ipc!r}")):
        init_synthetic(data, ipc)


def test_bad_init_lists_the_allowed_ones(data):
    with pytest.raises(ValueError, match="unknown init 'zeros'; choose one of noise, real, black, white, gray, "
                                         "class-mean"):
        init_synthetic(data, 1, "zeros")


def test_real_init_larger_than_a_class(data):
    with pytest.raises(ValueError, match=r"init 'real' needs 4 images per class, but class 2 \('c'\) of tiny has only 3"):
        init_synthetic(data, 4, "real")


def test_bad_seed_generator_and_jitter(data):
    with pytest.raises(ValueError, match="either generator or seed"):
        init_synthetic(data, 1, generator=torch.Generator(), seed=1)
    with pytest.raises(ValueError, match="seed must be an integer, got '1'"):
        init_synthetic(data, 1, seed="1")
    with pytest.raises(ValueError, match="jitter must be a number >= 0, got -0.1"):
        init_synthetic(data, 1, jitter=-0.1)


# ---------------------------------------------------------------------------------------------
# Provenance, save and load
# ---------------------------------------------------------------------------------------------


def test_make_provenance_fields():
    prov = make_provenance("dc", "ci", 0, 10, 1.5, extra={"distance": "ours"}, device="cpu")
    assert {k: prov[k] for k in ("method", "preset", "seed", "iterations", "wall_time_s")} == {
        "method": "dc", "preset": "ci", "seed": 0, "iterations": 10, "wall_time_s": 1.5}
    assert prov["code_version"]["gmlib"] == gmlib.__version__
    assert prov["library_versions"]["torch"] == torch.__version__
    assert prov["hardware"].startswith("CPU: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", prov["date"])
    assert prov["extra"] == {"distance": "ours"}
    commit = prov["code_version"]["git_commit"]
    package_root = Path(gmlib.__file__).resolve().parent.parent
    if (package_root / ".git").exists():  # running from the checkout: the commit is its HEAD
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package_root, capture_output=True, text=True)
        if head.returncode == 0:
            assert commit == head.stdout.strip()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)


def test_save_load_round_trip(data, tmp_path):
    syn = init_synthetic(data, 2, "real", seed=3)
    # Near-plain values are stored as plain ones (the safe loader refuses subclasses like TorchVersion).
    syn.metadata.update(loss=numpy.float32(0.5), steps=numpy.int64(3), torch=torch.__version__, shape=(1, 2),
                        lr=torch.tensor(0.01, requires_grad=True))
    prov = make_provenance("dc", "ci", 3, 5, 0.25, device="cpu")
    path = save_synthetic(syn, tmp_path / "sets" / "dc.pt", provenance=prov)
    assert os.listdir(path.parent) == ["dc.pt"]  # no temporary file left behind
    # The file holds only plain data: torch's safe loader reads it.
    assert torch.load(path, weights_only=True)["format_version"] == FORMAT_VERSION
    loaded = load_synthetic(path)
    assert torch.equal(loaded.images, syn.images) and torch.equal(loaded.labels, syn.labels)
    assert loaded.images.is_leaf and loaded.images.requires_grad
    assert (loaded.ipc, loaded.num_classes, loaded.mean, loaded.std, loaded.class_names, loaded.dataset) == (
        syn.ipc, syn.num_classes, syn.mean, syn.std, syn.class_names, syn.dataset)
    assert loaded.metadata["init"] == "real" and loaded.metadata["provenance"] == prov
    assert (loaded.metadata["loss"], loaded.metadata["steps"], loaded.metadata["shape"]) == (0.5, 3, (1, 2))
    assert type(loaded.metadata["torch"]) is str and loaded.metadata["lr"].item() == pytest.approx(0.01)
    for key in ("method", "preset", "seed", "iterations", "code_version", "library_versions", "hardware",
                "wall_time_s", "date"):
        assert key in loaded.metadata["provenance"]
    assert "provenance" not in syn.metadata  # saving does not change the set itself


def test_tampered_images_are_detected(data, tmp_path):
    path = save_synthetic(init_synthetic(data, 1, "noise"), tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    payload["images"][0, 0, 0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(SyntheticFileError, match="checksum mismatch for the images"):
        load_synthetic(path)


def test_corrupt_bytes_are_detected(data, tmp_path):
    path = save_synthetic(init_synthetic(data, 1, "noise"), tmp_path / "s.pt")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(16)
    path.write_bytes(bytes(raw))
    with pytest.raises(SyntheticFileError):
        load_synthetic(path)


def test_other_format_version_names_both(data, tmp_path):
    path = save_synthetic(init_synthetic(data, 1, "noise"), tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(SyntheticFileError, match=f"format version {FORMAT_VERSION + 1}.*format version "
                                                 f"{FORMAT_VERSION}"):
        load_synthetic(path)


def test_not_a_synthetic_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(SyntheticFileError, match="not a gmlib synthetic-set file"):
        load_synthetic(path)
    with pytest.raises(FileNotFoundError, match="no synthetic-set file"):
        load_synthetic(tmp_path / "missing.pt")


def test_failed_save_keeps_the_old_file(data, tmp_path, monkeypatch):
    syn = init_synthetic(data, 1, "noise")
    path = save_synthetic(syn, tmp_path / "s.pt")
    before = path.read_bytes()
    bad = syn.clone()
    bad.metadata["bad"] = object()  # not plain data: refused before anything is written
    with pytest.raises(ValueError, match=r"metadata\['bad'\] is a object"):
        save_synthetic(bad, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_synthetic(syn, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["s.pt"]
