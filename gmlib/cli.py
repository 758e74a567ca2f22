"""Command line: ``python -m gmlib data|experts|distill|evaluate|convert|compare ...`` for scripted reruns.

    python -m gmlib data mnist fashion-mnist     # fetch, verify and cache datasets
    python -m gmlib distill --dataset mnist --ipc 1 --method dc --profile ci --out runs/dc-mnist-1
    python -m gmlib experts --dataset mnist --profile ci --out runs/experts-mnist   # MTT's expert buffer
    python -m gmlib distill --dataset mnist --method mtt --buffer runs/experts-mnist --profile ci --out runs/mtt
    python -m gmlib evaluate runs/dc-mnist-1/synthetic.pt --networks convnet mlp --profile ci --json acc.json
    python -m gmlib evaluate res_MNIST_ConvNet_1ipc.pt --dataset mnist     # a set made by DC's own code
    python -m gmlib convert runs/dc-mnist-1/synthetic.pt res_dc.pt --to dc  # for the authors' evaluation
    python -m gmlib compare --methods random dc dm --ipc 1 10 --profile ci --out runs/grid   # one table

A profile (``ci``, ``cpu``, ``gpu``, ``paper``; ``auto`` = gpu with CUDA, else cpu) supplies the
budget: iterations, real batch size, network width, evaluation models/epochs. Explicit options
override it. Bad values exit with status 2 and a message naming the allowed ones.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from gmlib.book.presets import PROFILE_NAMES

DEFAULT_PROFILE = "auto"


def _load_dataset(name: str, device: Any, cache_dir: str | None):
    """The dataset by name (a seam the tests replace with a tiny fake)."""
    from gmlib.data import load_dataset

    return load_dataset(name, device=device, cache_dir=cache_dir)


def _dataset_or_exit(name: str, device: Any, cache_dir: str | None):
    """The dataset, or exit status 1 with the data error's message (a missing or corrupt file is
    not a usage error)."""
    from gmlib.data import DataError

    try:
        return _load_dataset(name, device, cache_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _profile_config_device(args: argparse.Namespace, make_config: Callable[..., Any]) -> tuple[Any, Any, Any]:
    """The profile, ``make_config(args, profile)`` and the device of a command that writes to
    ``--out``, the folder checked writable before any work; a bad value exits 2 naming it."""
    from gmlib.book.presets import get_profile
    from gmlib.fileio import check_writable_folder
    from gmlib.runinfo import resolve_device

    profile = get_profile(args.profile)
    try:
        config = make_config(args, profile)
        device = resolve_device(args.device or profile.device)
        check_writable_folder(args.out)  # before the run, not after it
    except ValueError as error:
        args.parser.error(str(error))
    return profile, config, device


# --------------------------------------------------------------------------------------------
# argparse value types: a bad value becomes a usage error (status 2) naming what is allowed
# --------------------------------------------------------------------------------------------


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _distance_spec(text: str) -> str:
    from gmlib.distances import parse_distance_spec

    try:
        parse_distance_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _data(args: argparse.Namespace) -> int:
    from gmlib.data import DataError, load_dataset

    status = 0
    for name in args.names:
        try:
            dataset = load_dataset(name, cache_dir=args.cache_dir)
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {len(dataset.train_labels)} train / {len(dataset.test_labels)} test images, "
              f"{dataset.num_classes} classes, {dataset.channels}x{dataset.im_size[0]}x{dataset.im_size[1]}, checksums verified")
    return status


# --------------------------------------------------------------------------------------------
# distill
# --------------------------------------------------------------------------------------------


# Options of gradient matching only: given with --method dm or mtt they are refused, not ignored.
_MATCHING_ONLY = ("distance", "engine", "precision", "match_level", "level_weight", "per_class", "inner_steps", "hessian_weight",
                  "hessian_kind", "hessian_loss", "outer_loop", "inner_loop")
# Options of trajectory matching only: refused for every other method.
_MTT_ONLY = ("buffer", "syn_steps", "expert_epochs", "max_start_epoch", "lr_lr", "lr_teacher", "gradient", "batch_syn")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` given with a value other than their default, as --option-names."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) != args.parser.get_default(name)]


def _mtt_overrides(args: argparse.Namespace, buffer: Any) -> dict[str, Any]:
    """MTT's explicit options; the network (and its keywords) are the buffer's unless given."""
    overrides = {name: getattr(args, name) for name in _MTT_ONLY[1:] if getattr(args, name) is not None}
    if args.network == args.parser.get_default("network") and args.width is None:
        overrides.update(network=buffer.manifest["network"], network_kwargs=buffer.network_kwargs)
    return overrides


def _distill_config(args: argparse.Namespace, profile: Any, buffer: Any = None):
    """The profile's configuration for the method (:func:`gmlib.book.presets.dc_config`,
    :func:`~gmlib.book.presets.dm_config` or :func:`~gmlib.book.presets.mtt_config`) with every
    explicit option applied on top. For mtt, ``buffer`` (default: ``--buffer``, loaded) supplies
    the network."""
    from gmlib.book.presets import dc_config, dm_config, mtt_config

    overrides: dict[str, Any] = {"network": args.network, "checkpoint_every": args.checkpoint_every}
    optional = {"iterations": args.iterations, "batch_real": args.batch_real, "lr_img": args.lr_img,
                "eval_models": args.eval_models, "init": args.init}
    if args.method != "mtt" and _given(args, _MTT_ONLY):
        raise ValueError(f"{_given(args, _MTT_ONLY)[0]} is an option of trajectory matching (--method mtt), "
                         f"not of --method {args.method}")
    if args.compile is not None and args.method == "mtt":
        raise ValueError("--compile is an option of dc, dsa and dm, not of --method mtt")
    if args.method == "dm":
        overrides["compile"] = bool(args.compile)
    if args.method in ("dm", "mtt"):
        given = _given(args, _MATCHING_ONLY) + (_given(args, ("batch_real",)) if args.method == "mtt" else [])
        if given:
            owner = "gradient matching (--method dc or dsa)" if given[0] != "--batch-real" else "dc, dsa and dm"
            raise ValueError(f"{given[0]} is an option of {owner}, not of --method {args.method}")
    if args.method == "mtt":
        if args.buffer is None:
            raise ValueError("--method mtt needs --buffer BUFFER, the experts' buffer (build one with "
                             "`python -m gmlib experts --dataset DATASET --out BUFFER`)")
        if buffer is None:
            from gmlib.methods.mtt_buffer import load_buffer

            buffer = load_buffer(args.buffer)
        overrides.update(_mtt_overrides(args, buffer))
        optional.pop("batch_real")
    elif args.method != "dm":
        overrides.update(method=args.method, distance=args.distance, engine=args.engine, precision=args.precision,
                         compile="auto" if args.compile is None else args.compile,
                         match_level=args.match_level, level_weight=args.level_weight, per_class=args.per_class,
                         inner_steps=args.inner_steps, hessian_weight=args.hessian_weight,
                         hessian_kind=args.hessian_kind, hessian_loss=args.hessian_loss)
        optional.update(outer_loop=args.outer_loop, inner_loop=args.inner_loop)
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.eval_at:
        overrides["eval_at"] = tuple(args.eval_at)
    build = {"dm": dm_config, "mtt": mtt_config}.get(args.method, dc_config)
    return _with_width(build(profile, args.ipc, args.dataset, **overrides), args)


def _with_width(config: Any, args: argparse.Namespace) -> Any:
    """``config`` with the ConvNet width ``--width`` when given (refused for a network without one)."""
    from gmlib.networks import filter_network_kwargs

    if args.width is None:
        return config
    if not filter_network_kwargs(args.network, {"width": args.width}):
        raise ValueError(f"--width applies only to convnet and convnet_bn, not {args.network!r}")
    return config.replace(network_kwargs={**dict(config.network_kwargs), "width": args.width})


def _distill(args: argparse.Namespace) -> int:
    from gmlib.methods.dc import distill
    from gmlib.methods.dm import distill_dm
    from gmlib.methods.mtt import check_buffer_fits, distill_mtt
    from gmlib.methods.mtt_buffer import load_buffer
    from gmlib.run.checkpoint import CheckpointError
    from gmlib.run.loop import DivergenceError
    from gmlib.run.stopping import FolderInUseError, Terminated
    from gmlib.runinfo import make_provenance
    from gmlib.synthetic import check_init, save_synthetic

    buffer = None
    if args.method == "mtt" and args.buffer is not None:
        try:
            buffer = load_buffer(args.buffer)  # every checksum verified once
        except ValueError as error:
            args.parser.error(str(error))
    profile, config, device = _profile_config_device(args, lambda args, profile: _distill_config(args, profile, buffer))
    dataset = _dataset_or_exit(args.dataset, device, args.cache_dir)
    try:  # what the run would fail on at its start, refused before any work
        check_init(dataset, config.ipc, config.init, device)
        if buffer is not None:
            buffer.check_matches(dataset, config.network, dict(config.network_kwargs))
            check_buffer_fits(buffer, config)
    except ValueError as error:
        args.parser.error(str(error))

    out = Path(args.out)
    start = time.perf_counter()
    try:
        common = dict(seed=args.seed, device=device, out_dir=out, resume=args.resume, progress=args.progress)
        if args.method == "mtt":
            result = distill_mtt(dataset, config, buffer, **common)
        else:
            result = (distill_dm if args.method == "dm" else distill)(dataset, config, **common)
    except (CheckpointError, DivergenceError, FolderInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Terminated:  # SIGTERM; the run saved its last completed iteration and said so
        return 143
    except KeyboardInterrupt:
        return 130
    seconds = time.perf_counter() - start

    history = result.history
    extra = {"dataset": args.dataset, "ipc": args.ipc, "config": config.as_dict(), "device": str(device),
             "distill_seconds": sum(history.seconds), "resumed_at": list(history.resumed_at)}
    provenance = make_provenance(args.method, profile.name, args.seed, config.iterations, seconds, extra, device=device)
    set_path = save_synthetic(result.synthetic, out / "synthetic.pt", provenance=provenance)
    history_path = history.save_json(out / "history.json")
    final = f"final loss {history.mean_losses()[-1]:.4f}, " if history.losses else ""
    print(f"{args.method} on {args.dataset}, ipc {args.ipc}, profile {profile.name}, seed {args.seed}: "
          f"{history.completed} iterations, {final}{seconds:.1f} s on {device}")
    if "learned_lr" in result.synthetic.metadata:
        print(f"learned learning rate {result.synthetic.metadata['learned_lr']:.6g} (saved with the set)")
    for evaluation in history.evaluations:
        print(f"  after {evaluation.iteration} iterations: {evaluation}")
    print(f"wrote {set_path} and {history_path}")
    return 0


# --------------------------------------------------------------------------------------------
# experts (trajectory matching's buffer)
# --------------------------------------------------------------------------------------------


def _expert_config(args: argparse.Namespace, profile: Any):
    """The profile's experts (:func:`gmlib.book.presets.expert_config`) with explicit options on top."""
    from gmlib.book.presets import expert_config

    overrides: dict[str, Any] = {"network": args.network, "dsa": args.dsa}
    optional = {"experts": args.experts, "epochs": args.epochs, "every": args.every, "lr": args.lr,
                "batch_size": args.batch_size, "real_per_class": args.real_per_class, "test_size": args.test_size}
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.half is not None:
        overrides["storage_dtype"] = "float16" if args.half else "float32"
    if not args.dsa:
        overrides["dsa_strategy"] = None
    return _with_width(expert_config(profile, args.dataset, **overrides), args)


def _experts(args: argparse.Namespace) -> int:
    from gmlib.methods.mtt_experts import train_experts

    profile, config, device = _profile_config_device(args, _expert_config)
    dataset = _dataset_or_exit(args.dataset, device, args.cache_dir)
    start = time.perf_counter()
    try:
        buffer = train_experts(dataset, config, args.out, seed=args.seed, progress=args.progress, device=device)
    except ValueError as error:  # a BatchNorm network, a folder holding another buffer (checked before any work)
        args.parser.error(str(error))
    except KeyboardInterrupt:
        print(f"stopped: the finished experts are kept in {args.out}; rerun the same command to continue",
              file=sys.stderr)
        return 130
    print(f"experts on {args.dataset}, profile {profile.name}, seed {args.seed}: {buffer.describe()}; "
          f"{time.perf_counter() - start:.1f} s on {device}")
    print(f"wrote {buffer.folder}")
    return 0


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    from gmlib.book.presets import eval_config, get_profile
    from gmlib.eval_config import DISTILLATION_METHODS, protocol_variant
    from gmlib.evaluate import evaluate_across_networks
    from gmlib.fileio import check_writable_folder
    from gmlib.runinfo import describe_hardware, library_versions, resolve_device
    from gmlib.synthetic import check_fits_dataset

    profile = get_profile(args.profile)
    try:
        device = resolve_device(args.device or profile.device)
        if args.json:  # the report's folder must take it before the models are trained
            if Path(args.json).is_dir():
                raise ValueError(f"--json {args.json} is a folder; give a file name such as {Path(args.json) / 'eval.json'}")
            check_writable_folder(Path(args.json).parent)
    except ValueError as error:
        args.parser.error(str(error))
    layout = _set_layout(args)
    # A foreign file does not know its dataset: the named one (loaded first) gives its shapes and classes.
    dataset = None if layout == "gmlib" else _dataset_or_exit(args.dataset, device, args.cache_dir)
    syn = _read_set(args, layout, dataset)
    method = syn.metadata.get("method", "dc")
    explicit = {"augment": args.augment} if args.augment != "auto" else {}  # auto: the papers' for the set
    if args.epochs is not None:
        explicit["epochs"] = args.epochs
    try:
        config = eval_config(profile, syn.dataset, method if method in DISTILLATION_METHODS else "dc", width=args.width,
                             **explicit)
        config = protocol_variant(config, args.protocol)
        if args.learned_lr:  # MTT's own protocol: the learning rate distilled with the set
            from gmlib.methods.mtt import learned_lr_protocol

            protocol = learned_lr_protocol(config, syn)
            config = protocol.config
            print(protocol.label)
    except ValueError as error:
        args.parser.error(f"{args.set}: {error}" if args.learned_lr else str(error))
    dataset = dataset or _dataset_or_exit(syn.dataset, device, args.cache_dir)
    try:
        check_fits_dataset(syn, dataset)
    except ValueError as error:
        args.parser.error(f"{args.set}: {error}")

    images, labels = syn.detached()
    models = args.models or profile.eval_models
    results = evaluate_across_networks(images, labels, dataset.test_images, dataset.test_labels, args.networks,
                                       config, models, args.seed, num_classes=syn.num_classes, device=device,
                                       progress=args.progress, precision=args.precision,
                                       compile="auto" if args.compile is None else args.compile)
    report: dict[str, Any] = {
        "set": str(args.set), "dataset": syn.dataset, "ipc": syn.ipc, "profile": profile.name, "seed": args.seed,
        "models": models, "protocol": args.protocol, "learned_lr": args.learned_lr, "format": layout,
        "source": syn.metadata.get("source"), "device": str(device), "passes": None,
        "hardware": describe_hardware(device),
        "versions": library_versions(), "results": {},
    }
    for name, result in results.items():
        print(f"{name}: {100 * result.mean:.2f} +- {100 * result.std:.2f} % ({result.num_models} models, "
              f"{result.config.num_epochs} epochs, augment {result.config.augment}, "
              f"{result.seconds_per_model:.1f} s/model)")
        report["passes"] = result.passes
        report["results"][name] = {"mean": result.mean, "std": result.std, "accuracies": result.accuracies,
                                   "seconds_per_model": result.seconds_per_model, "config": result.config.as_dict()}
    for network, accuracies in (syn.metadata.get("source") or {}).get("reported", {}).items():
        if accuracies:  # what the authors' own evaluation measured, as the file records it
            mean, std = statistics.fmean(accuracies), statistics.pstdev(accuracies)
            print(f"the file reports {network}: {100 * mean:.2f} +- {100 * std:.2f} % ({len(accuracies)} models, "
                  "the authors' evaluation)")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        print(f"wrote {path}")
    return 0


def _set_layout(args: argparse.Namespace) -> str:
    """The layout of ``args.set`` (``--format``, or detected); exits 2 when the file is missing or a
    foreign one comes without ``--dataset``."""
    from gmlib.exchange import detect_format

    try:
        layout = detect_format(args.set) if args.format == "auto" else args.format
        if layout != "gmlib" and args.dataset is None:
            raise ValueError(f"{args.set} is a set in the {layout} layout, which does not record its dataset; "
                             "name it with --dataset")
    except FileNotFoundError as error:
        args.parser.error(str(error))
    except ValueError as error:
        args.parser.error(f"{args.set}: {error}")
    return layout


def _read_set(args: argparse.Namespace, layout: str, dataset: Any = None):
    """The set ``args.set`` in ``layout``, for ``dataset`` (loaded) or ``args.dataset`` (by name);
    exits 2 with the reason when it cannot be read or is not of that dataset."""
    from gmlib.data import dataset_info
    from gmlib.exchange import read_set

    try:
        syn = read_set(args.set, dataset if dataset is not None else args.dataset, format=layout,
                       experiment=args.experiment, tag=args.tag)
        dataset_info(syn.dataset)
        if args.dataset is not None and syn.dataset != args.dataset:
            raise ValueError(f"the set is of {syn.dataset}, not --dataset {args.dataset}")
    except FileNotFoundError as error:
        args.parser.error(str(error))
    except ValueError as error:  # the readers' messages name the file already
        args.parser.error(str(error) if str(args.set) in str(error) else f"{args.set}: {error}")
    return syn


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------


def _convert(args: argparse.Namespace) -> int:
    from gmlib.exchange import write_set

    syn = _read_set(args, _set_layout(args))
    try:
        written = write_set(syn, args.out, args.to)
    except (OSError, ValueError) as error:
        args.parser.error(f"cannot write {args.out}: {error}")
    print(f"wrote {written} ({args.to} layout): {syn}")
    return 0


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def _compare(args: argparse.Namespace) -> int:
    from gmlib.book.presets import resolve_profile_name
    from gmlib.fileio import check_writable_folder
    from gmlib.runinfo import resolve_device
    from gmlib.studies.grid import ClusterOptions, GridBudget, plan_grid, run_grid

    try:
        budget = GridBudget(profile=resolve_profile_name(args.profile), iterations=args.iterations,
                            seconds=args.seconds, networks=tuple(args.networks), models=args.models)
        cells = plan_grid(args.methods, args.datasets, args.ipc, args.seeds)
        resolve_device(args.device or "auto")  # a bad device is refused here, not in every cell
        check_writable_folder(args.out)
    except ValueError as error:
        args.parser.error(str(error))
    cluster = None
    if args.ray is not None:
        try:
            cluster = ClusterOptions(address=None if args.ray == "local" else args.ray, workers=args.workers,
                                     gpus_per_cell=args.gpus_per_cell, retries=args.retries)
        except ValueError as error:
            args.parser.error(str(error))
    cache_dir = args.cache_dir
    try:
        outcome = run_grid(cells, budget, args.out, device=args.device or "auto",
                           load_dataset=lambda name: _load_dataset(name, resolve_device(args.device or "auto"),
                                                                   cache_dir),  # a failure is that cell's
                           progress=args.progress, executor="local" if cluster is None else "ray", cluster=cluster,
                           command="python -m gmlib " + shlex.join(args.argv))
    except (ValueError, ImportError) as error:  # a grid of another budget in the folder; no Ray installed
        args.parser.error(str(error))
    for record in outcome.records:
        accuracies = ", ".join(f"{network} {100 * result['mean']:.2f} +- {100 * result['std']:.2f} %"
                               for network, result in record["evaluations"].items())
        print(f"{record['key']}: {accuracies}; {record['iterations']} iterations, "
              f"{record['distill_seconds']:.1f} s distilling, {record['eval_seconds']:.1f} s evaluating")
    for key, error in outcome.failed.items():
        print(f"failed {key}: {error}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'table.csv'} and table.json ({len(outcome.records)} cells, "
          f"{len(outcome.failed)} failed; rerun the command to retry or extend)")
    return 1 if outcome.failed else 0


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def _add_set_source(parser: argparse.ArgumentParser, formats: tuple[str, ...], dataset_names: tuple[str, ...]) -> None:
    """The options that say how to read a set made by gmlib or by the authors' code."""
    parser.add_argument("--format", default="auto", choices=("auto",) + formats,
                        help="layout of SET: gmlib (save_synthetic), dc (the results file of DC's, DSA's and DM's "
                             "code, res_*.pt) or mtt (the folder MTT's code logs images_/labels_/lr_*.pt into); "
                             "auto = mtt for a folder, gmlib or dc by the file's content (default: %(default)s)")
    parser.add_argument("--dataset", default=None, choices=dataset_names,
                        help="the set's dataset; needed for the dc and mtt layouts, which do not record it")
    parser.add_argument("--experiment", type=_int_at_least(0), default=0,
                        help="dc layout: which experiment's set (0-based; default: %(default)s)")
    parser.add_argument("--tag", default="best",
                        help="mtt layout: the files' tag, 'best' or an iteration number (default: %(default)s)")


def _add_common(parser: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """--profile, --seed (unless ``seed`` is False: a command with seeds of its own), --device,
    --cache-dir and --progress."""
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=("auto",) + PROFILE_NAMES,
                        help="compute budget that supplies the defaults: ci (seconds, tests), cpu (a laptop), "
                             "gpu (one GPU), paper (the papers' settings); auto = gpu with CUDA, else cpu "
                             "(default: %(default)s)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same result "
                                                                "(default: %(default)s)")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda', 'cuda:N' or 'auto' (default: the profile's)")
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: $GMLIB_DATA_DIR or ~/.cache/gmlib)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar")


def build_parser() -> argparse.ArgumentParser:
    from gmlib.data import DATASET_NAMES
    from gmlib.distances import DISTANCE_NAMES
    from gmlib.eval_config import PROTOCOL_VARIANTS
    from gmlib.exchange import FORMATS
    from gmlib.methods.dc_config import ENGINES, METHODS
    from gmlib.methods.dc_variants import MATCH_LEVELS
    from gmlib.methods.hessian import HESSIAN_KINDS, HESSIAN_LOSSES
    from gmlib.methods.inner_loop import INNER_STEP_POLICIES
    from gmlib.networks import NETWORK_NAMES
    from gmlib.first_order import PRECISIONS
    from gmlib.synthetic import INIT_NAMES

    parser = argparse.ArgumentParser(prog="python -m gmlib", description="gmlib: dataset distillation by gradient matching")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch, verify (checksums) and cache datasets",
                               description="Fetch each dataset from its first working source, verify every file "
                                           "against its checksum and cache it (GMLIB_DATA_DIR, default ~/.cache/gmlib).")
    data.add_argument("names", nargs="+", choices=DATASET_NAMES, metavar="NAME",
                      help=f"dataset names, from: {', '.join(DATASET_NAMES)}")
    data.add_argument("--cache-dir", default=None, help="cache directory (default: $GMLIB_DATA_DIR or ~/.cache/gmlib)")
    data.set_defaults(run=_data)

    distill = commands.add_parser(
        "distill", help="learn a synthetic set by gradient matching (DC, DSA), distribution matching (DM) or "
                        "trajectory matching (MTT)",
        description="Learn IPC images per class of DATASET by gradient matching (dc, dsa), distribution matching "
                    "(dm) or trajectory matching (mtt, on the experts of --buffer) and write OUT/synthetic.pt "
                    "(with provenance) and OUT/history.json. The run checkpoints into OUT/checkpoint.pt every minute; "
                    "rerunning the same command resumes it (Ctrl-C and SIGTERM save the last completed "
                    "iteration), and rerunning with more --iterations extends it.")
    distill.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset to distill")
    distill.add_argument("--ipc", type=_int_at_least(1), default=1, help="images per class (default: %(default)s)")
    distill.add_argument("--method", default="dc", choices=METHODS + ("dm", "mtt"),
                         help="dc = gradient matching; dsa = with differentiable Siamese augmentation; dm = "
                              "distribution matching; mtt = trajectory matching (needs --buffer) "
                              "(default: %(default)s)")
    distill.add_argument("--out", required=True, help="output directory (created if needed)")
    distill.add_argument("--iterations", type=_int_at_least(0), default=None,
                         help="outer iterations, each with a fresh network (default: the profile's; paper 1000)")
    distill.add_argument("--init", default=None, choices=INIT_NAMES,
                         help="how the synthetic images start (default: the method's: noise for dc and dsa, "
                              "real for dm)")
    distill.add_argument("--network", default="convnet", choices=NETWORK_NAMES, metavar="NETWORK",
                         help=f"network whose gradients are matched, from: {', '.join(NETWORK_NAMES)} "
                              "(default: %(default)s)")
    distill.add_argument("--width", type=_int_at_least(1), default=None,
                         help="ConvNet width (default: the profile's; paper 128)")
    distill.add_argument("--batch-real", type=_int_at_least(1), default=None,
                         help="real images per class per outer step (default: the profile's; paper 256)")
    distill.add_argument("--distance", type=_distance_spec, default="ours",
                         help=f"gradient distance: one of {', '.join(DISTANCE_NAMES)} or a weighted sum such as "
                              "'d1+0.1*d2' (default: %(default)s)")
    distill.add_argument("--lr-img", type=_positive_float, default=None,
                         help="learning rate of the images (default: 0.1 for dc and dsa, the reference uses 0.01 for "
                              "mlp; 1 for dm)")
    distill.add_argument("--outer-loop", type=_int_at_least(1), default=None,
                         help="image updates per iteration (default: DC's value for IPC)")
    distill.add_argument("--inner-loop", type=_int_at_least(0), default=None,
                         help="network-training epochs between image updates (default: DC's value for IPC)")
    distill.add_argument("--eval-at", type=_int_at_least(0), nargs="*", default=None, metavar="N",
                         help="evaluate the set after these numbers of iterations (0 = the initialisation), "
                              "with the profile's evaluation budget")
    distill.add_argument("--eval-models", type=_int_at_least(1), default=None,
                         help="models per evaluation (default: the profile's)")
    distill.add_argument("--checkpoint-every", type=_int_at_least(0), default=0,
                         help="also write OUT/checkpoint.pt every K iterations (it is written every minute, at "
                              "the end and on Ctrl-C or SIGTERM anyway; default: %(default)s)")
    distill.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                         help="continue from OUT/checkpoint.pt when it exists; a checkpoint of other settings "
                              "or another seed is refused; --no-resume starts over")
    distill.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                         help="run the network's first-order passes through torch.compile (the first iteration "
                              "compiles; needs a C++ compiler on a CPU); default: dc and dsa compile on a CPU when "
                              "the run is long enough to pay for it, dm does not")
    distill.add_argument("--engine", default="auto", choices=ENGINES,
                         help="how per-class gradients are computed: loop or batched (vmap); auto = batched on "
                              "CUDA, loop on CPU; same result up to rounding (default: %(default)s)")
    distill.add_argument("--precision", default="auto", choices=PRECISIONS,
                         help="arithmetic of the first-order passes (real gradients, inner loop): auto = bf16 on "
                              "CPUs with native bfloat16, else fp32; fp32 is the exact path (default: %(default)s)")
    trajectories = distill.add_argument_group("trajectory matching (--method mtt; defaults = the profile's, "
                                              "paper = MTT's)")
    trajectories.add_argument("--buffer", default=None, metavar="BUFFER",
                              help="the experts' buffer (written by `python -m gmlib experts`); required for mtt")
    trajectories.add_argument("--syn-steps", type=_int_at_least(1), default=None,
                              help="student steps on the synthetic set per iteration (paper 20)")
    trajectories.add_argument("--expert-epochs", type=_int_at_least(1), default=None,
                              help="M: the target is the expert M kept snapshots after the start (paper 3)")
    trajectories.add_argument("--max-start-epoch", type=_int_at_least(1), default=None,
                              help="the start snapshot is drawn below this (paper 25)")
    trajectories.add_argument("--lr-lr", type=_positive_float, default=None,
                              help="learning rate of the learned learning rate (paper 1e-5; learned as its log)")
    trajectories.add_argument("--lr-teacher", type=_positive_float, default=None,
                              help="the student's initial learning rate (paper 0.01)")
    trajectories.add_argument("--batch-syn", type=_int_at_least(1), default=None,
                              help="synthetic images per student step (default: all)")
    trajectories.add_argument("--gradient", default=None, choices=("unroll", "recompute"),
                              help="backpropagate through all student steps at once (unroll) or one at a time, "
                                   "recomputing each (recompute: less memory, same numbers; default: unroll)")
    variants = distill.add_argument_group("what, how and where to match (chapters 3 and 4; defaults = DC)")
    variants.add_argument("--match-level", default="intra", choices=MATCH_LEVELS,
                          help="which gradients to match: per class (intra), of the union batch (inter), their "
                               "weighted sum (multi) or alternating by iteration (interleaved) (default: %(default)s)")
    variants.add_argument("--level-weight", type=_positive_float, default=None,
                          help="lambda, the weight of the inter-class term (default: the number of classes)")
    variants.add_argument("--per-class", action=argparse.BooleanOptionalAction, default=True,
                          help="match class by class; --no-per-class matches one mixed real batch against the whole set")
    variants.add_argument("--inner-steps", default="fixed", choices=INNER_STEP_POLICIES,
                          help="network training between image updates: DC's fixed epochs, stop when the real loss "
                               "rises (overfit), or seed 002's schedule zeta(t) (default: %(default)s)")
    variants.add_argument("--hessian-weight", type=float, default=0.0,
                          help="weight of the curvature term v^T C v, v = g_real - g_syn (0 = off; default: %(default)s)")
    variants.add_argument("--hessian-kind", default="exact", choices=HESSIAN_KINDS,
                          help="the curvature C: the Hessian (exact), |v^T H v| (abs) or Gauss-Newton (default: %(default)s)")
    variants.add_argument("--hessian-loss", default="synthetic", choices=HESSIAN_LOSSES,
                          help="whose loss's curvature: the synthetic or the real batch's (default: %(default)s)")
    _add_common(distill)
    distill.set_defaults(run=_distill, parser=distill)

    experts = commands.add_parser(
        "experts", help="train the experts of trajectory matching (MTT) into a buffer",
        description="Train networks on the real images of DATASET one after another (SGD, DSA) and keep their "
                    "parameters at the start and after every (k-th) epoch in OUT: one file per expert and "
                    "OUT/manifest.json (settings, checksums, test accuracies). Rerunning the same command keeps "
                    "every finished expert and trains the rest.")
    experts.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset of real images")
    experts.add_argument("--out", required=True, help="the buffer's folder (created if needed)")
    experts.add_argument("--experts", type=_int_at_least(1), default=None,
                         help="number of experts (default: the profile's; paper 100)")
    experts.add_argument("--epochs", type=_int_at_least(1), default=None,
                         help="epochs per expert (default: the profile's; paper 50)")
    experts.add_argument("--every", type=_int_at_least(1), default=None,
                         help="keep every K-th epoch's parameters (epochs must be a multiple; default 1)")
    experts.add_argument("--half", action=argparse.BooleanOptionalAction, default=None,
                         help="store the snapshots in float16 (half the disk); --no-half: float32 "
                              "(default: the profile's)")
    experts.add_argument("--real-per-class", type=_int_at_least(1), default=None,
                         help="train on this many real images per class (default: the profile's; paper all)")
    experts.add_argument("--test-size", type=_int_at_least(1), default=None,
                         help="test images for the per-epoch accuracy (default: the profile's; paper all)")
    experts.add_argument("--network", default="convnet", choices=NETWORK_NAMES, metavar="NETWORK",
                         help=f"expert network, from: {', '.join(NETWORK_NAMES)}; no BatchNorm (default: %(default)s)")
    experts.add_argument("--width", type=_int_at_least(1), default=None,
                         help="ConvNet width (default: the profile's; paper 128)")
    experts.add_argument("--lr", type=_positive_float, default=None, help="SGD learning rate (default: 0.01)")
    experts.add_argument("--batch-size", type=_int_at_least(1), default=None, help="batch size (default: 256)")
    experts.add_argument("--dsa", action=argparse.BooleanOptionalAction, default=True,
                         help="augment the real images with DSA (the dataset's strategy)")
    _add_common(experts)
    experts.set_defaults(run=_experts, parser=experts)

    evaluate = commands.add_parser(
        "evaluate", help="train fresh networks on a synthetic set and report test accuracy",
        description="Evaluate SET (written by `distill` or gmlib.synthetic.save_synthetic): train fresh networks "
                    "on it from scratch as DC's reference code does (SGD, momentum 0.9, weight decay 5e-4, E + 1 "
                    "epochs, lr x0.1 after epoch E//2 + 1 with fresh momentum) and test them on the dataset's real "
                    "test set; print mean +- std per network.")
    evaluate.add_argument("set", help="synthetic set: a file written by gmlib, or one made by the authors' code "
                                      "(see --format)")
    evaluate.add_argument("--networks", nargs="+", default=["convnet"], choices=NETWORK_NAMES, metavar="NETWORK",
                          help=f"networks to train, from: {', '.join(NETWORK_NAMES)} (default: convnet)")
    evaluate.add_argument("--models", type=_int_at_least(1), default=None,
                          help="models per network (default: the profile's; the papers use 100)")
    evaluate.add_argument("--epochs", type=_int_at_least(1), default=None,
                          help="the protocol's E (default: the profile's; 300, or 1000 with augmentation); the "
                               "reference schedule trains E + 1 epochs")
    evaluate.add_argument("--augment", default="auto", choices=("auto", "none", "mnist", "dsa"),
                          help="training augmentation: auto = dsa for DSA sets, DC's classic one for MNIST, "
                               "else none (default: %(default)s)")
    evaluate.add_argument("--protocol", default="reference", choices=tuple(PROTOCOL_VARIANTS), metavar="VARIANT",
                          help="the reference protocol or a named departure from it, to measure what the detail "
                               f"changes: {', '.join(PROTOCOL_VARIANTS)} (default: %(default)s; gmlib-0.1 is "
                               "gmlib 0.1's protocol)")
    evaluate.add_argument("--width", type=_int_at_least(1), default=None,
                          help="ConvNet width of the evaluated networks (default: the profile's)")
    evaluate.add_argument("--learned-lr", action="store_true",
                          help="train with the learning rate distilled with the set (MTT's own protocol; "
                               "report it beside the standard one)")
    evaluate.add_argument("--precision", default="auto", choices=PRECISIONS,
                          help="arithmetic of training and testing: auto = bf16 on CPUs with native bfloat16, "
                               "else fp32; fp32 is the exact path (default: %(default)s)")
    evaluate.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                          help="run training and testing through torch.compile (needs a C++ compiler on a CPU); "
                               "default: on a CPU when the evaluation is long enough to pay for it")
    evaluate.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON to OUT")
    _add_set_source(evaluate, FORMATS, DATASET_NAMES)
    _add_common(evaluate)
    evaluate.set_defaults(run=_evaluate, parser=evaluate)

    convert = commands.add_parser(
        "convert", help="write a synthetic set in another layout: gmlib's, or that of DC's/DSA's/DM's or MTT's code",
        description="Read SET (gmlib's file, or the output of the authors' code: see --format) and write it to OUT "
                    "in the layout --to, so that either side's evaluation can train on it. The pixels are kept as "
                    "they are (both keep the dataset's normalised space); labels are put in class order.")
    convert.add_argument("set", help="the synthetic set to read (a file, or MTT's folder)")
    convert.add_argument("out", help="where to write it (a file; a folder for --to mtt)")
    convert.add_argument("--to", required=True, choices=FORMATS, help="the layout to write")
    _add_set_source(convert, FORMATS, DATASET_NAMES)
    convert.set_defaults(run=_convert, parser=convert)

    from gmlib.studies.grid import GRID_METHODS

    compare = commands.add_parser(
        "compare", help="run a grid of methods x datasets x images per class x seeds and write one table",
        description="Distil and evaluate every cell of METHODS x DATASETS x IPC x SEEDS at the profile's budget "
                    "(equal iterations, or --seconds of distillation each) and write OUT/table.csv and "
                    "OUT/table.json: accuracy per evaluated network, seconds, peak memory and iterations per "
                    "cell. Each cell keeps its results in OUT/cells/<key>/; rerunning the command skips "
                    "finished cells and resumes the one in progress. Exit status 1 if a cell failed.")
    compare.add_argument("--methods", nargs="+", required=True, choices=GRID_METHODS, metavar="METHOD",
                         help=f"methods, from: {', '.join(GRID_METHODS)}")
    compare.add_argument("--datasets", nargs="+", default=["mnist"], choices=DATASET_NAMES, metavar="DATASET",
                         help=f"datasets, from: {', '.join(DATASET_NAMES)} (default: mnist)")
    compare.add_argument("--ipc", nargs="+", type=_int_at_least(1), default=[1], help="images per class (default: 1)")
    compare.add_argument("--seeds", nargs="+", type=_int_at_least(0), default=[0], help="seeds (default: 0)")
    compare.add_argument("--out", required=True, help="the grid's folder (created if needed)")
    budget = compare.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=_int_at_least(0), default=None,
                        help="iterations of every method (default: each method's at the profile)")
    budget.add_argument("--seconds", type=_positive_float, default=None,
                        help="an equal wall-clock budget: seconds of distillation per cell")
    compare.add_argument("--networks", nargs="+", default=["convnet"], choices=NETWORK_NAMES, metavar="NETWORK",
                         help=f"networks each set is evaluated on, from: {', '.join(NETWORK_NAMES)} "
                              "(default: convnet)")
    compare.add_argument("--models", type=_int_at_least(1), default=None,
                         help="evaluation models per network (default: the profile's)")
    _add_common(compare, seed=False)  # the cells' seeds are --seeds
    cluster = compare.add_argument_group("on a Ray cluster (pip install 'gmlib[cluster]'): one task per cell")
    cluster.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                         help="run the cells on Ray: 'local' (the default with no value) starts a local cluster of "
                              "--workers CPUs; else the address of a running cluster ('auto', 'ray://host:10001'), "
                              "whose workers must all see OUT")
    cluster.add_argument("--workers", type=_int_at_least(1), default=2,
                         help="CPUs of the local cluster: cells run at once (default: %(default)s)")
    cluster.add_argument("--gpus-per-cell", type=float, default=0.0,
                         help="GPUs each cell asks for; with GPUs the cells run on CUDA (default: %(default)s)")
    cluster.add_argument("--retries", type=_int_at_least(0), default=2,
                         help="restarts of a cell whose worker died; it resumes from its checkpoint "
                              "(default: %(default)s)")
    compare.set_defaults(run=_compare, parser=compare)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        args = build_parser().parse_args(argv)
        args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]  # the command line, for provenance
        status = args.run(args)
    except KeyboardInterrupt:  # during start-up (imports, data); a running distillation says more
        print("interrupted", file=sys.stderr)
        status = 130
    sys.exit(status)
