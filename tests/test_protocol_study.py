"""The evaluation-protocol study (gmlib.studies.protocol): one cell per (set, variant, model),
paired with the reference model by model, resumable, shared by workers, summarised."""

from __future__ import annotations

import dataclasses

import pytest

from gmlib.eval_config import EvalConfig
from gmlib.run.checkpoint import CheckpointError
from gmlib.studies.protocol import (
    BEST_OF,
    STUDY_VARIANTS,
    StudySet,
    cell_key,
    run_study,
    study_cells,
    summarise,
    variant_config,
)
from gmlib.synthetic import init_synthetic, save_synthetic
from tests.fakes import fake_dataset

# A fast reference: an MLP for a few epochs (E = 10: best-of tests after every epoch).
REFERENCE = EvalConfig(network="mlp", epochs=10)


@pytest.fixture()
def study(tmp_path):
    data = fake_dataset()
    path = save_synthetic(init_synthetic(data, 2, "real", seed=0), tmp_path / "set.pt")
    return StudySet("fake_set", str(path), REFERENCE), {"fake": data}


def test_cells_are_paired_resumable_and_shared_by_workers(tmp_path, study):
    study_set, datasets = study
    plan = [("fake_set", "reference", k) for k in range(5)] + [("fake_set", "no-weight-decay", k) for k in range(2)] \
        + [("fake_set", BEST_OF, 0), ("fake_set", "keep-momentum", 0)]
    out = tmp_path / "study"
    quiet = dict(datasets=datasets, log=lambda line: None)
    assert run_study(out, [study_set], plan, worker=0, workers=2, **quiet) == 5  # cells 0, 2, 4, ...
    assert run_study(out, [study_set], plan, worker=1, workers=2, **quiet) == 4
    assert run_study(out, [study_set], plan, **quiet) == 0  # all finished: nothing runs again
    cells = study_cells(out, seed=0)
    reference = cells.finished(cell_key("fake_set", "reference", 0))
    best = cells.finished(cell_key("fake_set", BEST_OF, 0))
    # best-of trains exactly the reference's model 0 and only reports differently
    assert best["final_accuracy"] == reference["accuracy"] and best["accuracy"] >= reference["accuracy"]
    assert [epoch for epoch, _ in best["curve"]] == list(range(1, 12))  # every epoch, then the final (E + 1)
    assert best["accuracy"] == max(accuracy for _, accuracy in best["curve"])
    assert reference["config"]["network"] == "mlp" and reference["path"] == study_set.path

    summary = summarise(out)["fake_set"]["variants"]
    assert list(summary) == ["reference", "keep-momentum", "no-weight-decay", BEST_OF]  # the registry's order
    assert summary["reference"]["n"] == 5 and set(summary["reference"]["first_models"]) == {"5"}
    assert summary["no-weight-decay"]["paired_difference"]["n"] == 2
    assert summary["keep-momentum"]["paired_difference"]["standard_error"] is None  # one pair has no error
    assert summary[BEST_OF]["final_accuracies"] == [reference["accuracy"]] and len(summary[BEST_OF]["curves"]) == 1
    first = summary["reference"]["accuracies"]
    assert summary["reference"]["mean"] == pytest.approx(sum(first) / 5)


def test_the_same_model_under_every_variant_that_keeps_the_network(tmp_path, study):
    study_set, datasets = study
    plan = [("fake_set", "reference", 0), ("fake_set", "keep-momentum", 0)]
    run_study(tmp_path / "study", [study_set], plan, datasets=datasets, log=lambda line: None)
    # the rate drops after epoch 7 of 11, where the models have converged: keeping the momentum there
    # changes the accuracies on this small test set not at all
    summary = summarise(tmp_path / "study")["fake_set"]["variants"]
    assert summary["keep-momentum"]["accuracies"] == summary["reference"]["accuracies"]


def test_variants_change_the_named_fields_only():
    base = EvalConfig(augment="mnist")
    assert variant_config(base, "reference") == dataclasses.replace(base, epochs=1000)  # E fixed, same protocol
    assert variant_config(base, "no-augmentation") == dataclasses.replace(base, augment="none", epochs=1000)
    assert variant_config(dataclasses.replace(base, epochs=30), "no-augmentation").protocol_epochs == 30
    assert variant_config(base, "300-epochs").protocol_epochs == 300
    assert variant_config(EvalConfig(network_kwargs={"width": 64}), "lenet-original").network == "lenet_original"
    assert variant_config(EvalConfig(network_kwargs={"width": 64}), "alexnet").network_kwargs == ()
    with pytest.raises(ValueError, match="unknown protocol variant 'shiny'; allowed: reference"):
        variant_config(base, "shiny")
    assert all(v.description for v in STUDY_VARIANTS.values())


def test_bad_plans_and_folders_are_refused(tmp_path, study):
    study_set, datasets = study
    with pytest.raises(ValueError, match="variant 'shiny'; allowed"):
        run_study(tmp_path / "a", [study_set], [("fake_set", "shiny", 0)], datasets=datasets)
    with pytest.raises(ValueError, match="set 'other'; sets: fake_set"):
        run_study(tmp_path / "a", [study_set], [("other", "reference", 0)], datasets=datasets)
    with pytest.raises(ValueError, match="worker must lie in"):
        run_study(tmp_path / "a", [study_set], [], worker=2, workers=2, datasets=datasets)
    study_cells(tmp_path / "b", seed=0)
    with pytest.raises(CheckpointError, match="seed: 0 there, 1 here"):
        run_study(tmp_path / "b", [study_set], [], seed=1, datasets=datasets)
    with pytest.raises(FileNotFoundError, match="no finished cells"):
        summarise(tmp_path / "c")
