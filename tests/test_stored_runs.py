"""The stored runs the book shows: each loads with its provenance, history and evaluation, and a
missing one is named with the runs that exist."""

from __future__ import annotations

import pytest

from gmlib.book.stored_runs import RESULTS_DIR, load_stored_json, load_stored_run, row_folder_name, stored_path

# Every stored distillation named <method>_<dataset>_ipc<N>_<profile>[_from-<start>].
# (mnist_ipc1_cpu, older than the rule, is shown by chapter 02 from its own files.)
STORED_RUNS = sorted(p.name for p in RESULTS_DIR.glob("*_*_ipc*_*") if (p / "synthetic.pt").is_file()
                     and any(p.glob("evaluation_*.json")))


def test_the_repository_has_stored_paper_runs():
    assert "dc_mnist_ipc1_paper" in STORED_RUNS and "dsa_mnist_ipc1_paper" in STORED_RUNS
    assert "dc_mnist_ipc1_cpu_from-black" in STORED_RUNS and "mtt_mnist_ipc1_cpu" in STORED_RUNS


@pytest.mark.parametrize("name", STORED_RUNS)
def test_a_stored_run_loads_with_its_provenance_history_and_accuracy(name):
    run = load_stored_run(name)
    method, dataset, ipc, profile = name.split("_")[:4]
    assert run.made["method"] == method and run.synthetic.dataset == dataset and ipc == f"ipc{run.synthetic.ipc}"
    assert run.made["preset"] == profile and run.config["network_kwargs"]["width"] == {"paper": 128, "cpu": 64}[profile]
    if "_from-" in name:
        assert run.config["init"] == name.split("_from-")[1]
    assert run.history.completed == run.iterations > 0
    assert run.synthetic.images.shape[0] == run.synthetic.num_classes * run.synthetic.ipc
    assert 0 < run.mean <= 1 and run.models >= 1
    assert name in run.describe() and f"{run.iterations} iterations" in run.describe()


def test_a_missing_stored_run_names_the_ones_that_exist():
    with pytest.raises(FileNotFoundError, match="stored runs in .*dc_mnist_ipc1_paper"):
        stored_path("no_such_run", "synthetic.pt")


@pytest.mark.parametrize("run, table", [("seed003_bilevel_900s", "seed003_bilevel_cpu.json"),
                                        ("seed003_gtn_60it", "seed003_gtn_cpu.json")])
def test_each_kept_row_lives_in_the_folder_named_after_its_label(run, table):
    rows = load_stored_json(run, table)["rows"]
    kept = [row for row in rows if row.get("folder")]
    assert kept and all(row["folder"] == row_folder_name(row["method"]) for row in kept)
    assert all(stored_path(run, f"{row['folder']}/synthetic.pt").is_file() for row in kept)
    assert row_folder_name("unroll + DD (ic = 1)") == "unroll_dd_ic1"


def test_the_stored_dm_vs_dc_benchmark_loads_with_its_command():
    from gmlib.book.stored_runs import load_stored_benchmark

    bench = load_stored_benchmark("dm_vs_dc_cpu")
    assert bench["command"].startswith("python benchmarks/bench_dm_vs_dc.py") and bench["threads"] >= 1
    assert [row["ipc"] for row in bench["rows"]] == [1, 10]
    with pytest.raises(FileNotFoundError, match="no_such_bench.json not found"):
        load_stored_benchmark("no_such_bench")
