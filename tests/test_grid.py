"""The comparison grid (gmlib.studies.grid) on the tests' fake dataset at profile ci with one
iteration: every method runs a cell, finished cells are skipped, the same seeds give the same
table, a failing cell does not lose the others, and bad input is refused with the reason."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from fakes import fake_dataset
from gmlib.studies.grid import (GRID_METHODS, TABLE_COLUMNS, GridBudget, GridCell, grid_table, plan_grid, run_cell,
                                run_grid)

ONE_STEP = GridBudget(profile="ci", iterations=1, models=1)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fake_mnist(name: str):
    """The grid's datasets by name: the fake 3-class 8x8 set, named as asked."""
    return fake_dataset(name=name)


def test_plan_is_the_product_in_order_with_readable_keys() -> None:
    cells = plan_grid(["dc", "dm"], ["mnist", "fashion-mnist"], [1, 10], [0, 1])
    assert len(cells) == 16 and cells[0] == GridCell("dc", "mnist", 1, 0) and cells[-1] == GridCell("dm", "fashion-mnist", 10, 1)
    assert cells[1].key == "dc_mnist_ipc1_seed1"


@pytest.mark.parametrize("make, message", [
    (lambda: GridCell("dd", "mnist", 1), "unknown method 'dd'; a grid runs random, herding, dc"),
    (lambda: GridCell("dc", "mnits", 1), "unknown dataset 'mnits'; choose from mnist"),
    (lambda: GridCell("dc", "mnist", 0), "ipc"),
    (lambda: plan_grid("dc", ["mnist"], [1]), "methods must be a non-empty list, got 'dc'"),
    (lambda: plan_grid(["dc", "dc"], ["mnist"], [1]), r"methods lists a value twice: \['dc', 'dc'\]"),
    (lambda: plan_grid(["dc"], ["mnist"], []), "ipcs must be a non-empty list"),
    (lambda: GridBudget(profile="laptop"), "unknown profile 'laptop'; choose from ci, cpu, gpu, paper"),
    (lambda: GridBudget(iterations=5, seconds=60), "give iterations .* or seconds .*, not both"),
    (lambda: GridBudget(seconds=-1), "seconds must be a positive number of seconds, got -1"),
    (lambda: GridBudget(networks=("convnet", "resnet99")), "unknown network 'resnet99'"),
    (lambda: GridBudget(models=0), "models"),
    (lambda: GridBudget(expert_changes=("experts", 1)), r"expert_changes must be a tuple of \(field name, value\) pairs"),
    (lambda: GridBudget(expert_changes=(("expert", 1),)), "expert_changes names 'expert', not ExpertConfig fields; "
                                                          "choose from .*experts"),
])
def test_bad_input_is_refused_with_the_reason(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_every_method_runs_a_cell_and_the_table_has_its_row(tmp_path) -> None:
    cells = plan_grid(list(GRID_METHODS), ["mnist"], [1])
    outcome = run_grid(cells, ONE_STEP, tmp_path, device="cpu", load_dataset=fake_mnist, progress=False)
    assert outcome.failed == {}
    rows = grid_table(tmp_path)
    assert [row["method"] for row in rows] == list(GRID_METHODS)
    for row in rows:
        assert row["iterations"] == (0 if row["method"] in ("random", "herding") else 1), row["method"]
        assert row["models"] == 1 and 0.0 <= row["mean"] <= 1.0 and row["network"] == "convnet"
        assert row["profile"] == "ci" and row["mode"] == "equal iterations"
    with open(tmp_path / "table.csv") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == list(TABLE_COLUMNS) and len(written) == len(GRID_METHODS)
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["budget"]["iterations"] == 1 and len(table["rows"]) == len(GRID_METHODS)
    assert "hardware" in table["written_by"]
    record = json.loads((tmp_path / "cells" / "mtt_mnist_ipc1_seed0" / "cell.json").read_text())
    assert record["learned_lr"] > 0 and (tmp_path / "experts" / "mnist").is_dir()  # MTT's shared experts
    assert (tmp_path / "cells" / "dsa_mnist_ipc1_seed0" / "synthetic.pt").is_file()
    dsa = json.loads((tmp_path / "cells" / "dsa_mnist_ipc1_seed0" / "cell.json").read_text())
    assert dsa["evaluations"]["convnet"]["config"]["augment"] == "dsa"  # DSA's paper's protocol


def test_the_budget_changes_mtts_experts_and_says_so_only_when_it_does(tmp_path) -> None:
    budget = GridBudget(profile="ci", iterations=1, models=1, expert_changes=(("experts", 1), ("epochs", 3)))
    outcome = run_grid(plan_grid(["mtt"], ["mnist"], [1]), budget, tmp_path, device="cpu", load_dataset=fake_mnist,
                       progress=False)
    assert outcome.failed == {}
    manifest = json.loads((tmp_path / "experts" / "mnist" / "manifest.json").read_text())
    assert manifest["experts_planned"] == 1 and manifest["epochs"] == 3  # ci's are 2 x 4
    assert budget.as_dict()["expert_changes"] == (("experts", 1), ("epochs", 3))
    assert "expert_changes" not in ONE_STEP.as_dict()  # grids stored before the field resume unchanged


def test_finished_cells_are_skipped_and_the_same_seeds_give_the_same_table(tmp_path) -> None:
    cells = plan_grid(["random", "dc"], ["mnist"], [1], [0, 1])
    run_grid(cells, ONE_STEP, tmp_path / "a", device="cpu", load_dataset=fake_mnist, progress=False)
    done = tmp_path / "a" / "cells" / "dc_mnist_ipc1_seed0" / "cell.json"
    stamp = done.stat().st_mtime_ns

    def no_data(name: str):
        raise AssertionError("a finished grid loads no data")

    again = run_grid(cells, ONE_STEP, tmp_path / "a", device="cpu", load_dataset=no_data, progress=False)
    assert done.stat().st_mtime_ns == stamp and len(again.records) == 4 and again.failed == {}
    run_grid(cells, ONE_STEP, tmp_path / "b", device="cpu", load_dataset=fake_mnist, progress=False)
    first, second = grid_table(tmp_path / "a"), grid_table(tmp_path / "b")
    assert [r["accuracies"] for r in first] == [r["accuracies"] for r in second]
    assert first[0]["accuracies"] != first[1]["accuracies"] or first[0]["seed"] != first[1]["seed"]
    with pytest.raises(ValueError, match="holds an experiment of other settings"):
        run_grid(cells, GridBudget(profile="ci", iterations=2, models=1), tmp_path / "a", device="cpu",
                 load_dataset=fake_mnist, progress=False)


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path) -> None:
    def only_mnist(name: str):
        if name != "mnist":
            raise FileNotFoundError(f"{name} is not cached")
        return fake_mnist(name)

    cells = plan_grid(["random"], ["mnist", "fashion-mnist"], [1])
    outcome = run_grid(cells, ONE_STEP, tmp_path, device="cpu", load_dataset=only_mnist, progress=False)
    assert outcome.failed == {"random_fashion-mnist_ipc1_seed0": "FileNotFoundError: fashion-mnist is not cached"}
    assert [r["key"] for r in outcome.records] == ["random_mnist_ipc1_seed0"]
    assert len(grid_table(tmp_path)) == 1


def test_an_equal_wall_clock_budget_stops_each_run_by_time(tmp_path) -> None:
    budget = GridBudget(profile="ci", seconds=0.5, models=1)
    record = run_cell(GridCell("dc", "mnist", 1), budget, tmp_path, dataset=fake_mnist("mnist"), device="cpu")
    assert record["iterations"] >= 1 and record["distill_seconds"] >= 0.5
    assert record["budget"]["mode"] == "equal wall-clock" and record["budget"]["seconds"] == 0.5
    with pytest.raises(ValueError, match="cell dc_fashion-mnist_ipc1_seed0 needs fashion-mnist, but the dataset given is mnist"):
        run_cell(GridCell("dc", "fashion-mnist", 1), budget, tmp_path, dataset=fake_mnist("mnist"), device="cpu")


def loading_that_dies_once(marker):
    """The fake datasets, except that the first call kills its process (a worker lost mid-grid)."""
    def load(name: str):
        import os

        if not marker.exists():
            marker.write_text("killed once")
            os._exit(1)
        return fake_mnist(name)
    return load


def test_on_a_local_two_worker_ray_cluster_the_grid_gives_the_local_table(tmp_path) -> None:
    """The same cells on Ray (2 CPU workers, one task per cell) give the same table as run here;
    a worker killed at a cell's start costs only that cell a restart."""
    import os
    import sys
    from pathlib import Path

    ray = pytest.importorskip("ray")
    from gmlib.studies.grid import ClusterOptions

    cells = plan_grid(["random", "dc", "dm"], ["mnist"], [1], [0, 1])
    run_grid(cells, ONE_STEP, tmp_path / "here", device="cpu", load_dataset=fake_mnist, progress=False)
    tests = str(Path(__file__).parent)  # the workers unpickle the fake datasets from tests/fakes.py
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024 ** 2,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, *sys.path]), "OMP_NUM_THREADS": "1"}})
    try:
        outcome = run_grid(cells, ONE_STEP, tmp_path / "ray", device="cpu", executor="ray",
                           load_dataset=loading_that_dies_once(tmp_path / "killed"),
                           cluster=ClusterOptions(workers=2, retries=2), progress=False)
    finally:
        ray.shutdown()
    assert (tmp_path / "killed").exists() and outcome.failed == {}
    assert [r["key"] for r in outcome.records] == [c.key for c in cells]
    here, there = grid_table(tmp_path / "here"), grid_table(tmp_path / "ray")
    assert [(r["method"], r["seed"], r["accuracies"], r["iterations"]) for r in here] == \
        [(r["method"], r["seed"], r["accuracies"], r["iterations"]) for r in there]
    with pytest.raises(ValueError, match="executor 'dask' is not one of local, ray"):
        run_grid(cells, ONE_STEP, tmp_path / "ray", executor="dask")
    with pytest.raises(ValueError, match="retries"):
        ClusterOptions(retries=-1)
