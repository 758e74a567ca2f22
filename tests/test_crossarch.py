"""gmlib.studies.crossarch: matrix layout, seeded determinism, resuming finished cells, the NAS proxy's
rank correlations against hand values, and error messages.

Everything runs on a tiny fake dataset (3 classes of 1x8x8 images) with narrow ConvNets and the
MLP, one or two distillation iterations and a few evaluation epochs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fakes import brightness_classes

import gmlib.studies.crossarch as crossarch
from gmlib.book.presets import dc_config, eval_config
from gmlib.data import ImageDataset
from gmlib.eval_config import EvalConfig
from gmlib.methods.dc_config import MatchingConfig
from gmlib.run.checkpoint import CheckpointError
from gmlib.studies.crossarch import (
    check_network_names,
    configs_from_profile,
    cross_architecture_matrix,
    source_config,
)
from gmlib.studies.nas_proxy import Candidate, nas_proxy, rank_correlation

CLASSES, SIZE = 3, 8
NET = {"width": 8, "depth": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_dataset(per_class: int = 12) -> ImageDataset:
    return brightness_classes(per_class, 4, classes=CLASSES, size=SIZE)


@pytest.fixture(scope="module")
def dataset() -> ImageDataset:
    return fake_dataset()


MATCHING = MatchingConfig(ipc=1, iterations=1, batch_real=4, batch_train=4, network_kwargs=NET, bn_real_per_class=2)
EVAL = EvalConfig(network_kwargs=NET, epochs=2, batch_size=4)


def matrix(dataset, sources, targets, **kwargs):
    kwargs.setdefault("matching_config", MATCHING)
    kwargs.setdefault("eval_config", EVAL)
    kwargs.setdefault("num_models", 2)
    return cross_architecture_matrix(dataset, sources, targets, device="cpu", progress=False, **kwargs)


# ------------------------------------------------------------------------------------------
# The matrix
# ------------------------------------------------------------------------------------------


def test_matrix_shape_labels_and_order(dataset):
    result = matrix(dataset, ["MLP", "convnet"], ["convnet_bn", "mlp", "convnet"])
    assert result.sources == ("mlp", "convnet") and result.targets == ("convnet_bn", "mlp", "convnet")
    assert result.mean.shape == result.std.shape == result.num_models.shape == (2, 3)
    assert (result.num_models == 2).all()
    assert set(result.synthetic) == {"mlp", "convnet"}
    for i, source in enumerate(result.sources):
        assert result.synthetic[source].images.shape == (CLASSES, 1, SIZE, SIZE)
        for j, target in enumerate(result.targets):
            cell = result.cell(source, target)
            assert (cell.source, cell.target) == (source, target)
            assert result.mean[i, j] == pytest.approx(np.mean(cell.accuracies))
            assert result.std[i, j] == pytest.approx(np.std(cell.accuracies))
            assert all(0.0 <= a <= 1.0 for a in cell.accuracies)
    # Rows are distilled with their own network, the MLP at the reference's lr_img.
    assert result.matching_configs["mlp"].network == "mlp" and result.matching_configs["mlp"].lr_img == 0.01
    assert result.matching_configs["mlp"].network_kwargs == ()  # the width reaches the ConvNets only
    assert result.matching_configs["convnet"].lr_img == MATCHING.lr_img
    assert dict(result.matching_configs["convnet"].network_kwargs) == NET
    assert len(result.percent_table()) == 2 and len(result.percent_table()[0]) == 3
    data = result.to_dict()
    assert data["sources"] == ["mlp", "convnet"] and np.allclose(data["mean"], result.mean)


def test_rows_start_from_the_same_images_and_columns_share_initialisations(dataset):
    """Same seed for every row: a one-row matrix equals the same row inside a bigger one."""
    alone = matrix(dataset, ["convnet"], ["mlp"])
    inside = matrix(dataset, ["mlp", "convnet"], ["convnet", "mlp"])
    assert torch.equal(alone.synthetic["convnet"].images, inside.synthetic["convnet"].images)
    assert alone.cell("convnet", "mlp").accuracies == inside.cell("convnet", "mlp").accuracies


def test_matrix_is_deterministic_per_seed(dataset):
    a = matrix(dataset, ["convnet", "mlp"], ["mlp", "convnet"], seed=3)
    b = matrix(dataset, ["convnet", "mlp"], ["mlp", "convnet"], seed=3)
    c = matrix(dataset, ["convnet", "mlp"], ["mlp", "convnet"], seed=4)
    np.testing.assert_array_equal(a.mean, b.mean)
    for source in a.sources:
        assert torch.equal(a.synthetic[source].images, b.synthetic[source].images)
        assert not torch.equal(a.synthetic[source].images, c.synthetic[source].images)


def test_resume_skips_finished_cells_and_adds_new_ones(dataset, tmp_path, monkeypatch):
    first = matrix(dataset, ["convnet"], ["mlp"], checkpoint_dir=tmp_path)
    assert (tmp_path / "experiment.json").is_file() and (tmp_path / "distill-convnet" / "synthetic.pt").is_file()
    assert (tmp_path / "convnet-on-mlp" / "cell.json").is_file()  # one folder per cell (gmlib.studies.cells)

    evaluated, distilled = [], []
    real_evaluate, real_distill = crossarch.evaluate_across_networks, crossarch.distill
    monkeypatch.setattr(crossarch, "evaluate_across_networks",
                        lambda *a, **k: evaluated.append(a[4]) or real_evaluate(*a, **k))
    monkeypatch.setattr(crossarch, "distill", lambda *a, **k: distilled.append(a[1].network) or real_distill(*a, **k))

    again = matrix(dataset, ["convnet"], ["mlp"], checkpoint_dir=tmp_path)
    assert evaluated == [] and distilled == []  # nothing recomputed
    assert again.cell("convnet", "mlp").accuracies == first.cell("convnet", "mlp").accuracies
    assert torch.equal(again.synthetic["convnet"].images, first.synthetic["convnet"].images)
    assert again.distill_seconds["convnet"] == first.distill_seconds["convnet"] > 0  # the time it took then

    grown = matrix(dataset, ["convnet"], ["mlp", "convnet"], checkpoint_dir=tmp_path)
    assert evaluated == [["convnet"]] and distilled == []  # only the new cell
    fresh = matrix(dataset, ["convnet"], ["mlp", "convnet"])
    np.testing.assert_array_equal(grown.mean, fresh.mean)

    evaluated.clear(), distilled.clear()
    matrix(dataset, ["convnet"], ["mlp"], checkpoint_dir=tmp_path, resume=False)
    assert distilled == ["convnet"] and evaluated[-1] == ["mlp"]  # resume=False starts over


def test_resume_refuses_another_experiment(dataset, tmp_path):
    matrix(dataset, ["convnet"], ["mlp"], checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="seed"):
        matrix(dataset, ["convnet"], ["mlp"], checkpoint_dir=tmp_path, seed=1)


def test_profile_settings(dataset):
    matching, evaluation, models = configs_from_profile("ci", "mnist")
    assert matching.iterations == 10 and evaluation.augment == "mnist" and models == 2
    assert dict(evaluation.network_kwargs) == {"width": 32} and evaluation.epochs == 30
    assert configs_from_profile("ci", "fake")[1].augment == "none"
    # one path from a profile: the presets' constructors, the same evaluation in both configs
    assert (matching, evaluation) == (dc_config("ci", 1, "mnist"), eval_config("ci", "mnist"))
    assert matching.eval_config == evaluation
    dsa_matching, dsa_evaluation, _ = configs_from_profile("ci", "mnist", method="dsa")
    assert dsa_matching.method == "dsa" and dsa_evaluation.augment == "dsa"
    assert dsa_evaluation.dsa_strategy == "color_crop_cutout_scale_rotate"  # digits: no flip
    assert source_config(matching, "lenet").network_kwargs == ()  # LeNet takes no width
    assert source_config(matching, "mlp", per_network_lr_img={}).lr_img == matching.lr_img


@pytest.mark.parametrize(
    "sources, targets, message",
    [
        (["convnet", "resnet50"], ["mlp"], r"unknown network 'resnet50' in sources; allowed: 'mlp', 'convnet'"),
        (["convnet"], ["vit"], r"unknown network 'vit' in targets"),
        ([], ["mlp"], r"sources is empty; give at least one of 'mlp'"),
        (["convnet"], [], r"targets is empty"),
        ("convnet", ["mlp"], r"sources must be a list of network names"),
        (["convnet", "ConvNet"], ["mlp"], r"'convnet' appears twice in sources"),
    ],
)
def test_bad_network_lists_are_refused(dataset, sources, targets, message):
    with pytest.raises(ValueError, match=message):
        matrix(dataset, sources, targets)


def test_other_bad_arguments(dataset):
    with pytest.raises(ValueError, match="not both"):
        cross_architecture_matrix(dataset, ["convnet"], ["mlp"], matching_config=MATCHING, profile="ci")
    with pytest.raises(ValueError, match="ipc=10 applies to a profile only"):
        cross_architecture_matrix(dataset, ["convnet"], ["mlp"], matching_config=MATCHING, ipc=10)
    with pytest.raises(ValueError, match="num_models must be an integer >= 1, got 0"):
        matrix(dataset, ["convnet"], ["mlp"], num_models=0)
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        configs_from_profile("huge", "mnist")
    result = matrix(dataset, ["convnet"], ["mlp"])
    with pytest.raises(ValueError, match=r"no cell \('mlp', 'mlp'\); rows are \['convnet'\]"):
        result.cell("mlp", "mlp")
    assert check_network_names("x", ("LeNet",)) == ("lenet",)


# ------------------------------------------------------------------------------------------
# The NAS proxy
# ------------------------------------------------------------------------------------------


def test_rank_correlation_hand_values():
    # One swapped pair out of four: rho = 1 - 6 * (1 + 1) / (4 * 15) = 0.8; tau = (5 - 1) / 6.
    rho, tau = rank_correlation([1, 2, 3, 4], [10, 30, 20, 40])
    assert rho == pytest.approx(0.8) and tau == pytest.approx(4 / 6)
    assert rank_correlation([0.1, 0.5, 0.9], [0.2, 0.3, 0.4]) == pytest.approx((1.0, 1.0))
    assert rank_correlation([3, 2, 1], [1, 2, 3]) == pytest.approx((-1.0, -1.0))
    # Ties take average ranks: x ranks (1, 2.5, 2.5), y ranks (1, 2, 3) -> Pearson of ranks = sqrt(3)/2.
    rho, tau = rank_correlation([1, 2, 2], [1, 2, 3])
    assert rho == pytest.approx(math.sqrt(3) / 2) and tau == pytest.approx(2 / math.sqrt(6))
    assert all(math.isnan(v) for v in rank_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="differ in length: 2 vs 3"):
        rank_correlation([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2 candidates"):
        rank_correlation([1], [1])


def test_nas_proxy_runs_every_candidate_and_is_deterministic(dataset):
    synthetic = matrix(dataset, ["convnet"], ["convnet"]).synthetic["convnet"]
    kwargs = dict(depths=(1, 2), widths=(4, 8), proxy_config=EvalConfig(epochs=2, batch_size=4),
                  real_config=EvalConfig(batch_size=8), real_epochs=1, num_models=2, seed=0, device="cpu")
    real = (dataset.train_images, dataset.train_labels)
    test = (dataset.test_images, dataset.test_labels)
    a = nas_proxy(synthetic, real, test, **kwargs)
    b = nas_proxy(synthetic.detached(), real, test, **kwargs)
    assert a.candidates == [Candidate(1, 4), Candidate(2, 4), Candidate(1, 8), Candidate(2, 8)]
    assert a.candidates[0].name == "ConvNet-D1-W4"
    assert a.proxy_mean == b.proxy_mean and a.real_mean == b.real_mean
    assert len(a.proxy_mean) == len(a.real_mean) == len(a.parameters) == 4
    assert a.parameters[0] < a.parameters[2]  # wider has more parameters
    expected = rank_correlation(a.proxy_mean, a.real_mean)
    assert (a.spearman, a.kendall) == pytest.approx(expected, nan_ok=True)
    assert len(a.rows()) == 4 and a.to_dict()["candidates"][0]["name"] == "ConvNet-D1-W4"


def test_nas_proxy_errors(dataset):
    pair = (dataset.train_images, dataset.train_labels)
    with pytest.raises(ValueError, match=r"depths must hold integers >= 1, got 0"):
        nas_proxy(pair, pair, pair, depths=(0, 1))
    with pytest.raises(ValueError, match=r"widths must be a non-empty list"):
        nas_proxy(pair, pair, pair, widths=())
    with pytest.raises(ValueError, match=r"proxy_config must be an EvalConfig of network 'convnet'"):
        nas_proxy(pair, pair, pair, proxy_config=EvalConfig(network="mlp"))
    with pytest.raises(ValueError, match=r"synthetic must be a SyntheticSet or an \(images, labels\) pair"):
        nas_proxy("images", pair, pair)
