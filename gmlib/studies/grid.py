"""The comparison grid: every method on the same footing, one tidy table (chapter 11).

A grid is the product methods x datasets x images per class x seeds. Each *cell* makes one
synthetic set with one method at a compute profile's budget -- the same iterations for every cell,
or the same wall-clock seconds of distillation (:class:`GridBudget`) -- and evaluates it on one or
more networks under the evaluation protocol of the method's paper (the augmentation DSA, DM and
MTT evaluate with; DC's otherwise). A cell keeps everything it measured in its own folder under
``out_dir/cells/<key>/`` (:class:`gmlib.studies.cells.CellFolder`, as the cross-architecture
matrix does): ``cell.json`` (accuracy per evaluated network, seconds, peak memory, iterations done,
the configuration, provenance) once it is finished, the set as ``synthetic.pt``, and while it
distils the run's checkpoint. So cells are independent: a grid can be stopped and
rerun (finished cells are skipped, a cell in progress resumes from its last checkpoint), extended
with more cells, or shared by several processes. :func:`grid_table` gathers the finished cells
into rows; :func:`write_table` writes them as CSV and JSON.

Nothing here implements a method: each cell calls the method's own run (:mod:`gmlib.methods`)
through the one loop (:func:`gmlib.run.loop.distill_with` and :func:`gmlib.run.loop.run`), with
the configuration :mod:`gmlib.book.presets` and the chapters' budgets give it at the profile.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gmlib.checks import check_int
from gmlib.fileio import atomic_write_text, json_ready
from gmlib.runinfo import describe_hardware, library_versions, resolve_device
from gmlib.studies.cells import CellFolder, finished_records

# The methods a grid can run, by the name its table uses (the order of the book's comparison).
GRID_METHODS: tuple[str, ...] = ("random", "herding", "dc", "dsa", "dc-md", "dm", "mtt", "unroll", "ift", "gtn")
METHOD_DESCRIPTIONS: dict[str, str] = {
    "random": "random real images (no distillation)",
    "herding": "herding in pixel space (no distillation)",
    "dc": "gradient matching (DC)",
    "dsa": "gradient matching with differentiable Siamese augmentation (DSA)",
    "dc-md": "DC with multi-level matching and the d1 + d2 distance (Jiang et al.'s MD)",
    "dm": "distribution matching (DM)",
    "mtt": "matching training trajectories (MTT)",
    "unroll": "backpropagation through unrolled training (Wang et al.)",
    "ift": "implicit differentiation (Medvedev and D'yakonov)",
    "gtn": "a generative teaching network trained by gradient matching (GM + GTN-lrn, k = 64)",
}
# The evaluation protocol each method's paper used ('dc': DC's augmentation on MNIST, none otherwise).
_PROTOCOL_OF = {"dsa": "dsa", "dm": "dm", "mtt": "mtt"}
EXECUTORS = ("local", "ray")
_GRID_KIND = "gmlib.grid"
# Equal wall-clock budgets stop each run by time; its iteration count is only this cap.
_ITERATION_CAP = 1_000_000


@dataclass(frozen=True)
class GridCell:
    """One cell: ``method`` (one of :data:`GRID_METHODS`) on ``dataset`` (a name) at ``ipc``
    images per class, distilled and evaluated from ``seed``."""

    method: str
    dataset: str
    ipc: int
    seed: int = 0

    def __post_init__(self) -> None:
        from gmlib.data import DATASET_NAMES

        if self.method not in GRID_METHODS:
            raise ValueError(f"unknown method {self.method!r}; a grid runs {', '.join(GRID_METHODS)}")
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASET_NAMES)}")
        check_int("ipc (images per class)", self.ipc, 1)
        check_int("seed", self.seed, 0)

    @property
    def key(self) -> str:
        """The cell's folder name, e.g. 'dc_mnist_ipc1_seed0'."""
        return f"{self.method}_{self.dataset}_ipc{self.ipc}_seed{self.seed}"


def plan_grid(methods: Sequence[str], datasets: Sequence[str], ipcs: Sequence[int],
              seeds: Sequence[int] = (0,)) -> list[GridCell]:
    """Every cell of methods x datasets x ipcs x seeds, in that nesting order (each list checked)."""
    lists = {"methods": methods, "datasets": datasets, "ipcs": ipcs, "seeds": seeds}
    for name, values in lists.items():
        if isinstance(values, (str, int)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{name} must be a non-empty list, got {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"{name} lists a value twice: {list(values)}")
    return [GridCell(m, d, i, s) for m in methods for d in datasets for i in ipcs for s in seeds]


@dataclass(frozen=True)
class GridBudget:
    """What every cell of a grid gets: the compute ``profile``'s configuration of each method,
    with ``iterations`` for every method (None: each method's iterations at the profile) or
    ``seconds`` of distillation each (an equal wall-clock budget: the run stops after the
    iteration that passes it); evaluation on ``networks`` with ``models`` networks each (None: the
    profile's number) under the method's paper's protocol at the profile. ``expert_changes``:
    (ExpertConfig field, value) pairs that change the profile's experts of MTT's cells (trained
    once per grid, before any iteration, so they are not in its budget)."""

    profile: str = "ci"
    iterations: int | None = None
    seconds: float | None = None
    networks: tuple[str, ...] = ("convnet",)
    models: int | None = None
    expert_changes: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        from gmlib.book.presets import PROFILE_NAMES
        from gmlib.studies.crossarch import check_network_names

        if self.profile not in PROFILE_NAMES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {', '.join(PROFILE_NAMES)}")
        if self.iterations is not None and self.seconds is not None:
            raise ValueError("give iterations (equal iterations) or seconds (equal wall-clock), not both")
        if self.iterations is not None:
            check_int("iterations", self.iterations, 0)
        if self.seconds is not None and (isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float))
                                         or not self.seconds > 0 or math.isinf(self.seconds)):
            raise ValueError(f"seconds must be a positive number of seconds, got {self.seconds!r}")
        object.__setattr__(self, "networks", check_network_names("networks", self.networks))
        if self.models is not None:
            check_int("models", self.models, 1)
        self._check_expert_changes()

    def _check_expert_changes(self) -> None:
        from gmlib.methods.mtt_experts import ExpertConfig

        changes = self.expert_changes
        if not isinstance(changes, tuple) or not all(isinstance(c, tuple) and len(c) == 2 for c in changes):
            raise ValueError(f"expert_changes must be a tuple of (field name, value) pairs, got {changes!r}")
        fields = {field.name for field in dataclasses.fields(ExpertConfig)}
        unknown = [name for name, _ in changes if name not in fields]
        if unknown:
            raise ValueError(f"expert_changes names {', '.join(map(repr, unknown))}, not ExpertConfig fields; "
                             f"choose from {', '.join(sorted(fields))}")

    @property
    def mode(self) -> str:
        return "equal wall-clock" if self.seconds is not None else "equal iterations"

    def as_dict(self) -> dict[str, Any]:
        fields = {**asdict(self), "networks": list(self.networks), "mode": self.mode}
        if not self.expert_changes:  # so that grids stored before the field resume as they were
            del fields["expert_changes"]
        return fields


# --------------------------------------------------------------------------------------------
# One cell: the method's run at the budget, then the evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class CellRun:
    """What a method's run produced for one cell."""

    synthetic: Any  # gmlib.synthetic.SyntheticSet
    config: dict[str, Any]
    iterations: int
    seconds: float
    peak_mib: float | None


def _loop_run(result: Any, config: Any) -> CellRun:
    """A loop method's cell: its distillation seconds are the iterations' (over every session of a
    resumed run, without checkpoint writes), as the loop's time limit counts them."""
    history = result.history
    peak = history.peak_mib if history.peak_mib == history.peak_mib else None  # NaN: not measured
    return CellRun(result.synthetic, json_ready(config.as_dict()), history.completed, float(sum(history.seconds)), peak)


def _budgeted(config: Any, budget: GridBudget, profile_iterations: int) -> tuple[Any, float | None]:
    """``config`` with the budget's iterations (a wall-clock budget: only a cap, the time limit ends
    the run) and no evaluations during the run (the grid evaluates the final set), and the limit."""
    if budget.seconds is not None:
        iterations = _ITERATION_CAP
    else:
        iterations = profile_iterations if budget.iterations is None else budget.iterations
    changes: dict[str, Any] = {"iterations": iterations}
    if hasattr(config, "eval_at"):
        changes["eval_at"] = ()
    return dataclasses.replace(config, **changes), budget.seconds


def _run_on_loop(method_class: Any, config_class: Any, dataset: Any, config: Any, budget: GridBudget,
                 cell: GridCell, device: Any, folder: Path, method_args: tuple = ()) -> CellRun:
    from gmlib.run.loop import distill_with

    config, limit = _budgeted(config, budget, config.iterations)
    result = distill_with(method_class, config_class, dataset, config, seed=cell.seed, device=device,
                          out_dir=folder / "run", resume=True, progress=False, time_limit_s=limit,
                          method_args=method_args)
    return _loop_run(result, config)


def _coreset_run(cell: GridCell, dataset: Any, device: Any) -> CellRun:
    from gmlib.methods.coreset import herding_coreset, random_coreset
    from gmlib.synthetic import SyntheticSet

    began = time.perf_counter()
    if cell.method == "random":
        images, labels = random_coreset(dataset, cell.ipc, cell.seed)
    else:  # herding over the whole class is deterministic: the seed changes nothing
        images, labels = herding_coreset(dataset, cell.ipc)
    synthetic = SyntheticSet(images.to(device), labels.to(device), cell.ipc, dataset.num_classes, dataset.mean,
                             dataset.std, dataset.class_names, dataset.name, {"method": cell.method})
    return CellRun(synthetic, {"method": cell.method, "ipc": cell.ipc}, 0, time.perf_counter() - began, None)


def _experts(dataset: Any, budget: GridBudget, device: Any, out_dir: Path) -> Any:
    """The profile's expert buffer for ``dataset`` with the budget's changes, trained once per grid
    (resumable) and shared by every MTT cell of that dataset."""
    from gmlib.book.presets import expert_config
    from gmlib.methods.mtt_experts import train_experts

    config = expert_config(budget.profile, dataset.name, **dict(budget.expert_changes))
    return train_experts(dataset, config, out_dir / "experts" / dataset.name, seed=0, progress=False, device=device)


def run_method(cell: GridCell, budget: GridBudget, dataset: Any, device: Any, folder: Path,
               grid_dir: Path) -> CellRun:
    """The set of ``cell`` at ``budget``: the method's configuration at the profile, run on the loop
    in ``folder`` (resumable); MTT's experts live in ``grid_dir/experts/<dataset>``."""
    from gmlib.book import presets
    from gmlib.book.budgets import BilevelBudget, GenerativeTeachingBudget

    profile, name, ipc = budget.profile, dataset.name, cell.ipc
    if cell.method in ("random", "herding"):
        return _coreset_run(cell, dataset, device)
    if cell.method in ("dc", "dsa", "dc-md"):
        from gmlib.methods.dc import DCMethod
        from gmlib.methods.dc_config import MatchingConfig

        extra = {"match_level": "multi", "distance": "d1+d2"} if cell.method == "dc-md" else {}
        config = presets.dc_config(profile, ipc, name, method="dsa" if cell.method == "dsa" else "dc", **extra)
        return _run_on_loop(DCMethod, MatchingConfig, dataset, config, budget, cell, device, folder)
    if cell.method == "dm":
        from gmlib.methods.dm import DMConfig, DMMethod

        return _run_on_loop(DMMethod, DMConfig, dataset, presets.dm_config(profile, ipc, name), budget, cell,
                            device, folder)
    if cell.method == "mtt":
        from gmlib.methods.mtt import MTTConfig, MTTMethod

        buffer = _experts(dataset, budget, device, grid_dir)
        return _run_on_loop(MTTMethod, MTTConfig, dataset, presets.mtt_config(profile, ipc, name), budget, cell,
                            device, folder, method_args=(buffer,))
    if cell.method in ("unroll", "ift"):
        from gmlib.methods.bilevel import ImplicitConfig, ImplicitMethod, UnrollConfig, UnrollMethod

        bilevel = BilevelBudget.for_profile(profile)
        steps = max(n for n in bilevel.steps if n <= 10)  # chapter 01's N = 10, or the profile's largest below
        if cell.method == "unroll":
            return _run_on_loop(UnrollMethod, UnrollConfig, dataset, bilevel.unroll_config(steps, ipc=ipc), budget,
                                cell, device, folder)
        return _run_on_loop(ImplicitMethod, ImplicitConfig, dataset, bilevel.implicit_config(steps, ipc=ipc), budget,
                            cell, device, folder)
    from gmlib.methods.gtn import GTNMethod
    from gmlib.run.loop import run

    teaching = GenerativeTeachingBudget.for_profile(profile)  # chapter 10's GM + GTN-lrn with k = 64
    config, limit = _budgeted(teaching.gm_config(64, ipc), budget, teaching.gm_iterations)
    result = run(GTNMethod(dataset, config, cell.seed, resolve_device(device)), out_dir=folder / "run", resume=True,
                 progress=False, time_limit_s=limit)
    return _loop_run(result, config)


def _eval_config(cell: GridCell, budget: GridBudget, network: str) -> Any:
    from gmlib.book.presets import eval_config

    return eval_config(budget.profile, cell.dataset, _PROTOCOL_OF.get(cell.method, "dc"), network)


def run_cell(cell: GridCell, budget: GridBudget, out_dir: str | os.PathLike, *, dataset: Any = None,
             device: str | torch.device = "auto") -> dict[str, Any]:
    """Run ``cell`` (unless ``out_dir/cells/<key>/cell.json`` says it is done) and return its record.

    ``dataset``: the loaded :class:`gmlib.data.ImageDataset` (None: load ``cell.dataset``).
    The record holds, per evaluated network, the accuracies of ``budget.models`` networks trained
    on the set, and the cell's iterations, seconds (distillation, evaluation) and peak memory.
    """
    from gmlib.book.presets import get_profile
    from gmlib.evaluate import evaluate_across_networks
    from gmlib.runinfo import make_provenance
    from gmlib.synthetic import save_synthetic

    grid_dir = Path(out_dir)
    cells = grid_cells(grid_dir, budget)
    finished = cells.finished(cell.key)
    if finished is not None:
        return finished
    device = resolve_device(device)
    if dataset is None:
        from gmlib.data import load_dataset

        dataset = load_dataset(cell.dataset, device=device)
    if dataset.name != cell.dataset:
        raise ValueError(f"cell {cell.key} needs {cell.dataset}, but the dataset given is {dataset.name}")
    folder = cells.folder(cell.key)
    made = run_method(cell, budget, dataset, device, folder, grid_dir)
    models = budget.models or get_profile(budget.profile).eval_models
    images, labels = made.synthetic.detached()
    began = time.perf_counter()
    evaluations = {}
    for network in budget.networks:  # one network at a time: each under its own protocol settings
        result = evaluate_across_networks(images, labels, dataset.test_images, dataset.test_labels, [network],
                                          _eval_config(cell, budget, network), models, cell.seed,
                                          num_classes=dataset.num_classes, device=device)[network]
        evaluations[network] = {"mean": result.mean, "std": result.std, "accuracies": list(result.accuracies),
                                "seconds_per_model": result.seconds_per_model,
                                "config": json_ready(result.config.as_dict())}
    eval_seconds = time.perf_counter() - began
    provenance = make_provenance(cell.method, budget.profile, cell.seed, made.iterations, made.seconds,
                                 {"cell": asdict(cell), "budget": budget.as_dict(), "config": made.config},
                                 device=device)
    save_synthetic(made.synthetic, folder / "synthetic.pt", provenance=provenance)
    record = {"cell": asdict(cell), "key": cell.key, "budget": budget.as_dict(), "iterations": made.iterations,
              "distill_seconds": made.seconds, "eval_seconds": eval_seconds, "peak_mib": made.peak_mib,
              "models": models, "evaluations": evaluations, "config": made.config,
              "learned_lr": made.synthetic.metadata.get("learned_lr"), "provenance": json_ready(provenance)}
    return cells.record(cell.key, record)  # last: a cell is finished once its record exists


# --------------------------------------------------------------------------------------------
# The grid: its identity on disk, running the cells, the table
# --------------------------------------------------------------------------------------------


def grid_cells(out_dir: str | os.PathLike, budget: GridBudget) -> CellFolder:
    """The grid's cells, ``out_dir/cells/<key>/`` (:class:`gmlib.studies.cells.CellFolder`): a folder
    that holds a grid of another budget is refused, since its cells cannot share one table."""
    return CellFolder(Path(out_dir) / "cells", _GRID_KIND, budget.as_dict())


@dataclass(frozen=True)
class ClusterOptions:
    """How a grid runs its cells on Ray (``pip install gmlib[cluster]``): one task per cell.

    ``address``: an existing Ray cluster ('auto', or 'ray://host:port'); None starts a local one
    with ``workers`` CPUs (or joins the Ray already started in this process). ``cpus_per_cell`` and
    ``gpus_per_cell``: what each cell's task asks the cluster for (with GPUs the cell runs on
    CUDA). ``retries``: how often a cell whose worker died is started again; it resumes from its
    last checkpoint, so a killed worker loses only that cell's unfinished work. Every worker must
    see the grid's folder (a shared file system on a multi-machine cluster).
    """

    address: str | None = None
    workers: int = 2
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    retries: int = 2

    def __post_init__(self) -> None:
        check_int("workers", self.workers, 1)
        check_int("retries", self.retries, 0)
        for name in ("cpus_per_cell", "gpus_per_cell"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _cell_task(cell: GridCell, budget: GridBudget, out_dir: str, device: str,
               load_dataset: Callable[[str], Any] | None) -> dict[str, Any]:
    """What one Ray task runs: load the cell's dataset on the worker, then :func:`run_cell`."""
    device = resolve_device(device)
    if load_dataset is None:
        from gmlib.data import load_dataset as load

        dataset = load(cell.dataset, device=device)
    else:
        dataset = load_dataset(cell.dataset)
    return run_cell(cell, budget, out_dir, dataset=dataset, device=device)


def _run_on_ray(cells: Sequence[GridCell], budget: GridBudget, out_dir: Path, device: str,
                load_dataset: Callable[[str], Any] | None, options: ClusterOptions,
                progress: bool) -> tuple[dict[str, dict], dict[str, str]]:
    """Every cell as one Ray task; the records and the failures (key -> error) as they finish."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("executor='ray' needs Ray: pip install 'gmlib[cluster]' (or ray)") from error
    from gmlib.progress import progress_bar

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, num_cpus=options.workers if options.address is None else None,
                 include_dashboard=False, log_to_driver=False)
    if options.gpus_per_cell > 0 and device == "auto":
        device = "cuda"
    task = ray.remote(num_cpus=options.cpus_per_cell, num_gpus=options.gpus_per_cell,
                      max_retries=options.retries)(_cell_task)
    pending = {task.remote(cell, budget, str(out_dir), device, load_dataset): cell.key for cell in cells}
    records, failed = {}, {}
    bar = progress_bar(len(pending), "grid (ray)", enabled=progress)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready[0])
            try:
                records[key] = ray.get(ready[0])
            except Exception as error:  # the task's own error, or its worker died more often than retried
                failed[key] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}"
            bar.update()
    finally:
        bar.close()
        if started_here:
            ray.shutdown()
    return records, failed


@dataclass
class GridOutcome:
    """The cells finished (their records, in the order asked) and those that failed (key -> error)."""

    records: list[dict[str, Any]]
    failed: dict[str, str]


def run_grid(cells: Sequence[GridCell], budget: GridBudget, out_dir: str | os.PathLike, *,
             device: str | torch.device = "auto", load_dataset: Callable[[str], Any] | None = None,
             progress: bool = True, executor: str = "local", cluster: ClusterOptions | None = None,
             command: str | None = None) -> GridOutcome:
    """Run every cell not yet finished in ``out_dir`` and write the table (:func:`write_table`;
    ``command``, the command line that ran the grid, goes into it).

    ``executor='local'`` runs the cells one after another in this process; ``'ray'`` runs each as
    a task on a Ray cluster (``cluster``: :class:`ClusterOptions`; default a local cluster of 2
    CPU workers). Either way the cells write the same files, so the table is the same, and a cell
    that fails is reported with its error while the others go on. ``load_dataset(name)`` gives
    the datasets (default: :func:`gmlib.data.load_dataset` on ``device``; on Ray it runs on the
    worker, so it must be picklable); locally each dataset is loaded once.
    """

    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if cluster is not None and executor != "ray":
        raise ValueError("cluster options apply to executor='ray' only")
    out_dir = Path(out_dir)
    stored = grid_cells(out_dir, budget).records()
    finished = {cell.key: stored[cell.key] for cell in cells if cell.key in stored}
    todo = [cell for cell in cells if cell.key not in finished]
    if executor == "ray":
        done, failed = _run_on_ray(todo, budget, out_dir, str(device), load_dataset, cluster or ClusterOptions(),
                                   progress)
    else:
        done, failed = _run_here(todo, budget, out_dir, resolve_device(device), load_dataset, progress)
    finished.update(done)
    write_table(out_dir, command=command)
    return GridOutcome([finished[cell.key] for cell in cells if cell.key in finished], failed)


def _run_here(cells: Sequence[GridCell], budget: GridBudget, out_dir: Path, device: torch.device,
              load_dataset: Callable[[str], Any] | None, progress: bool) -> tuple[dict[str, dict], dict[str, str]]:
    """The cells one after another in this process, each dataset loaded once."""
    from gmlib.progress import progress_bar

    if load_dataset is None:
        from gmlib.data import load_dataset as load

        def load_dataset(name: str) -> Any:
            return load(name, device=device)

    datasets: dict[str, Any] = {}
    records, failed = {}, {}
    bar = progress_bar(len(cells), "grid", enabled=progress)
    for cell in cells:
        bar.set_postfix(cell=cell.key)
        try:
            if cell.dataset not in datasets:
                datasets[cell.dataset] = load_dataset(cell.dataset)
            records[cell.key] = run_cell(cell, budget, out_dir, dataset=datasets[cell.dataset], device=device)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # one cell's failure must not lose the others
            failed[cell.key] = f"{type(error).__name__}: {error}"
        bar.update()
    bar.close()
    return records, failed


TABLE_COLUMNS = ("method", "dataset", "ipc", "seed", "network", "mean", "std", "models", "accuracies", "iterations",
                 "distill_seconds", "eval_seconds", "peak_mib", "profile", "mode", "budget_seconds")


def grid_table(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per finished cell and evaluated network (sorted by method, dataset, ipc, seed,
    network), with the :data:`TABLE_COLUMNS`; accuracies are fractions."""
    rows = []
    for record in finished_records(Path(out_dir) / "cells").values():
        cell, budget = record["cell"], record["budget"]
        for network, result in record["evaluations"].items():
            rows.append({**cell, "network": network, "mean": result["mean"], "std": result["std"],
                         "models": len(result["accuracies"]), "accuracies": result["accuracies"],
                         "iterations": record["iterations"], "distill_seconds": record["distill_seconds"],
                         "eval_seconds": record["eval_seconds"], "peak_mib": record["peak_mib"],
                         "profile": budget["profile"], "mode": budget["mode"], "budget_seconds": budget["seconds"]})
    order = {m: i for i, m in enumerate(GRID_METHODS)}
    return sorted(rows, key=lambda r: (order[r["method"]], r["dataset"], r["ipc"], r["seed"], r["network"]))


def write_table(out_dir: str | os.PathLike, *, command: str | None = None) -> tuple[Path, Path]:
    """``out_dir/table.csv`` and ``out_dir/table.json`` (rows, the grid's budget and provenance:
    hardware, versions, time and ``command``) from the finished cells; returns both paths."""
    out_dir = Path(out_dir)
    rows = grid_table(out_dir)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "accuracies": " ".join(f"{a:.4f}" for a in row["accuracies"])})
    csv_path = atomic_write_text(out_dir / "table.csv", text.getvalue())
    experiment = out_dir / "cells" / "experiment.json"
    budget = json.loads(experiment.read_text())["identity"] if experiment.is_file() else None
    device = torch.device("cpu")
    table = {"budget": budget, "rows": rows, "written_by": {
        "hardware": describe_hardware(device), "versions": library_versions(), "command": command,
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}}
    json_path = atomic_write_text(out_dir / "table.json", json.dumps(json_ready(table), indent=1))
    return csv_path, json_path
