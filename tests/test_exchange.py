"""Synthetic sets in the authors' file layouts (gmlib.exchange), on files the tests build the way
DC's, DSA's, DM's and MTT's code write them: reading, writing, round trips and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmlib.data import dataset_info
from gmlib.exchange import (detect_format, read_dc_results, read_mtt_set, read_set, write_dc_results,
                            write_mtt_set, write_set)
from gmlib.synthetic import SyntheticFileError, SyntheticSet, class_ordered_labels, load_synthetic, save_synthetic

MNIST = dataset_info("mnist")


def authors_set(ipc: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels as the authors' code keeps them: normalised MNIST-shaped pixels and
    class-ordered int64 labels (``[np.ones(ipc) * c for c in classes]``)."""
    images = torch.randn(10 * ipc, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor(np.array([np.ones(ipc) * c for c in range(10)]), dtype=torch.long).view(-1)
    return images, labels


def write_authors_results(path, experiments: int = 2, ipc: int = 2) -> list:
    """A results file as DC's main.py saves it: numpy accuracies and all."""
    data = [list(authors_set(ipc, seed)) for seed in range(experiments)]
    accuracies = {"ConvNet": [np.float64(0.91), np.float64(0.905)], "MLP": [np.mean([0.7, 0.8])]}
    torch.save({"data": data, "accs_all_exps": accuracies}, path)
    return data


def test_reads_every_experiment_of_a_dc_results_file(tmp_path) -> None:
    path = tmp_path / "res_MNIST_ConvNet_2ipc.pt"
    data = write_authors_results(path)
    for k, (images, _) in enumerate(data):
        syn = read_dc_results(path, "mnist", experiment=k)
        assert (syn.dataset, syn.ipc, syn.num_classes) == ("mnist", 2, 10)
        assert torch.equal(syn.images.detach(), images)  # pixels taken as they are
        assert (syn.mean, syn.std) == (MNIST.mean, MNIST.std)
        assert syn.metadata["method"] == "dc"
        source = syn.metadata["source"]
        assert (source["format"], source["experiment"], source["experiments"]) == ("dc", k, 2)
        assert source["reported"] == {"ConvNet": [0.91, 0.905], "MLP": [pytest.approx(0.75)]}
        assert len(source["sha256"]) == 64
    assert detect_format(path) == "dc"
    assert torch.equal(read_set(path, "mnist", experiment=1).images, read_dc_results(path, "mnist", experiment=1).images)


def test_the_method_comes_from_the_file_name_or_the_caller(tmp_path) -> None:
    for name, method in (("res_DSA_MNIST_ConvNet_1ipc.pt", "dsa"), ("res_DM_MNIST_ConvNet_1ipc.pt", "dm"),
                         ("res_MNIST_ConvNet_1ipc.pt", "dc"), ("anything.pt", "dc")):
        write_authors_results(tmp_path / name, experiments=1, ipc=1)
        assert read_dc_results(tmp_path / name, "mnist").metadata["method"] == method
    assert read_dc_results(tmp_path / "anything.pt", "mnist", method="dsa").metadata["method"] == "dsa"
    with pytest.raises(ValueError, match="method 'mtt' is not one whose code writes this layout"):
        read_dc_results(tmp_path / "anything.pt", "mnist", method="mtt")


def test_labels_out_of_class_order_are_sorted_stably(tmp_path) -> None:
    images, labels = authors_set(ipc=3)
    shuffle = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    torch.save({"data": [[images[shuffle], labels[shuffle]]]}, tmp_path / "res.pt")
    syn = read_dc_results(tmp_path / "res.pt", "mnist")
    assert torch.equal(syn.labels, class_ordered_labels(10, 3))
    for c in range(10):  # each class keeps its images, in the order the file has them
        mine = images[shuffle][labels[shuffle] == c]
        assert torch.equal(syn.class_images(c).detach(), mine)


def test_dc_round_trip_keeps_pixels_and_labels(tmp_path) -> None:
    images, labels = authors_set(ipc=2)
    syn = SyntheticSet(images, labels, 2, 10, MNIST.mean, MNIST.std, list(MNIST.class_names), "mnist")
    path = write_dc_results([syn, syn.clone()], tmp_path / "res_ours.pt", accuracies={"ConvNet": [0.9, 0.8]})
    raw = torch.load(path, weights_only=True)  # what the authors' code would torch.load
    assert len(raw["data"]) == 2 and torch.equal(raw["data"][1][0], images) and raw["data"][0][1].dtype == torch.long
    assert raw["accs_all_exps"] == {"ConvNet": [0.9, 0.8]}
    back = read_dc_results(path, "mnist", experiment=1)
    assert torch.equal(back.images.detach(), syn.images.detach()) and torch.equal(back.labels, syn.labels)


def test_reads_and_writes_mtt_folders_with_the_learned_rate(tmp_path) -> None:
    images, labels = authors_set(ipc=1)
    folder = tmp_path / "logged_files" / "MNIST" / "run"
    folder.mkdir(parents=True)
    torch.save(images, folder / "images_best.pt")
    torch.save(labels, folder / "labels_best.pt")
    torch.save(torch.tensor(0.0123), folder / "lr_best.pt")
    torch.save(images + 1, folder / "images_500.pt")
    torch.save(labels, folder / "labels_500.pt")
    syn = read_mtt_set(folder, "mnist")
    assert torch.equal(syn.images.detach(), images) and syn.metadata["method"] == "mtt"
    assert syn.metadata["learned_lr"] == pytest.approx(0.0123)
    assert syn.metadata["source"]["tag"] == "best" and set(syn.metadata["source"]["sha256"]) == {"images", "labels", "lr"}
    at_500 = read_set(folder, "mnist", tag="500")  # a folder is MTT's layout; no lr file for that tag
    assert torch.equal(at_500.images.detach(), images + 1) and "learned_lr" not in at_500.metadata
    torch.save(0.02, folder / "lr_best.pt")  # some versions save lr.item(), a float
    assert read_mtt_set(folder, "mnist").metadata["learned_lr"] == 0.02
    out = write_mtt_set(syn, tmp_path / "mine")
    assert torch.load(out / "lr_best.pt", weights_only=True).item() == pytest.approx(0.0123)
    assert torch.equal(read_mtt_set(out, "mnist").images, syn.images)
    with pytest.raises(FileNotFoundError, match="no images_7.pt in .*images_500.pt, images_best.pt"):
        read_mtt_set(folder, "mnist", tag="7")


def test_gmlib_files_convert_both_ways(tmp_path) -> None:
    images, labels = authors_set(ipc=1)
    syn = SyntheticSet(images, labels, 1, 10, MNIST.mean, MNIST.std, list(MNIST.class_names), "mnist",
                       {"method": "mtt", "learned_lr": 0.01})
    ours = save_synthetic(syn, tmp_path / "synthetic.pt")
    assert detect_format(ours) == "gmlib" and read_set(ours).metadata == syn.metadata  # no dataset needed
    dc_file = write_set(read_set(ours), tmp_path / "res.pt", "dc")
    mtt_folder = write_set(read_set(ours), tmp_path / "mtt", "mtt")
    back = write_set(read_set(dc_file, "mnist"), tmp_path / "back.pt", "gmlib")
    for path, dataset in ((dc_file, "mnist"), (mtt_folder, "mnist"), (back, None)):
        assert torch.equal(read_set(path, dataset).images.detach(), images), path
    assert load_synthetic(back).metadata["source"]["format"] == "dc"  # where it came from is kept
    assert read_set(mtt_folder, "mnist").metadata["learned_lr"] == 0.01


@pytest.mark.parametrize("payload, message", [
    ({"weights": torch.zeros(2)}, "not a results file of DC's, DSA's or DM's code"),
    ({"data": []}, "not a results file"),
    ({"data": [[torch.zeros(10, 1, 32, 32), torch.arange(10)]]}, r"images are \(1, 32, 32\), but mnist images are \(1, 28, 28\)"),
    ({"data": [[torch.zeros(10, 1, 28, 28), torch.arange(10).float()]]}, "hard labels; soft labels are not supported"),
    ({"data": [[torch.zeros(10, 1, 28, 28), torch.arange(10) + 1]]}, r"labels must lie in 0..9"),
    ({"data": [[torch.zeros(11, 1, 28, 28), torch.cat([torch.arange(10), torch.tensor([3])])]]},
     r"same number of images; counts per class \[1, 1, 1, 2, 1"),
    ({"data": [[torch.zeros(10, 1, 28, 28)]]}, "experiment 0 is not an \\[images, labels\\] pair"),
    ({"data": [[torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.arange(10)]]}, "images must be a float tensor"),
])
def test_bad_results_files_are_refused_with_the_reason(tmp_path, payload, message) -> None:
    torch.save(payload, tmp_path / "res.pt")
    with pytest.raises(SyntheticFileError, match=message):
        read_dc_results(tmp_path / "res.pt", "mnist")


def test_bad_arguments_and_unreadable_files(tmp_path) -> None:
    write_authors_results(tmp_path / "res.pt", experiments=2, ipc=1)
    with pytest.raises(ValueError, match="experiment 2 is not in .*experiments 0..1"):
        read_dc_results(tmp_path / "res.pt", "mnist", experiment=2)
    with pytest.raises(ValueError, match="does not record its dataset; name it"):
        read_set(tmp_path / "res.pt")
    with pytest.raises(ValueError, match="format 'npz' is not one of: auto, gmlib, dc, mtt"):
        read_set(tmp_path / "res.pt", "mnist", format="npz")
    with pytest.raises(FileNotFoundError, match="no synthetic set at"):
        read_set(tmp_path / "missing.pt", "mnist")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(SyntheticFileError, match="could not read .*junk.pt as tensors and numbers"):
        read_dc_results(tmp_path / "junk.pt", "mnist")
    torch.save({"data": [[torch.nn.Linear(2, 2), torch.arange(10)]]}, tmp_path / "code.pt")  # objects, not data
    with pytest.raises(SyntheticFileError, match="could not read"):
        read_dc_results(tmp_path / "code.pt", "mnist")
