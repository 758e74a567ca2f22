"""gmlib's speed goals on this machine, at equal accuracy, each measured against a straightforward
implementation in the same process (interleaved, so both see the same load):

1. **One DC outer iteration** on real MNIST at DC's reference settings (ConvNet width 128, 256
   real images per class, noise start):

   * ``plain``: :mod:`gmlib.methods.dc_reference` (whole real batches, float32, one backward of
     the summed loss, plain inner-loop SGD), as the authors' code computes it;
   * ``gmlib exact``: :class:`gmlib.methods.dc.DCMethod` with ``precision='fp32', compile=False``;
   * ``gmlib``: ``DCMethod`` with the defaults of a run of DC's 1000 iterations (``'auto'``: on a
     CPU with native bfloat16 and a C++ compiler, bfloat16 first-order passes, compiled; see
     :mod:`gmlib.first_order`). Compiling happens once per process, in the warm-up; its seconds
     are reported on their own.

   At 1 image per class an iteration is one outer step, timed end to end. At 10 it is 10 outer
   steps with 50 inner epochs between them (DC's loops): one outer step and one 50-epoch inner
   phase are timed, and an iteration is ``10 x step + 9 x phase``.

2. **Evaluating a set under the protocol**, per model: the stored 1-image-per-class DC set
   (``results/dc_mnist_ipc1_paper``), 1001 epochs with DC's MNIST augmentation, then the 10,000
   test images:

   * ``plain``: one model after another, whole batches, float32, the augmentation one image at a
     time as the reference does it, the test pass in batches of 256;
   * ``gmlib``: :func:`gmlib.evaluate.evaluate_set` with the defaults of one call evaluating all
     ``--models`` models (with 10 or more, 'auto' compiles where it can), one model per call so
     that the two paths interleave; the compilation, once per process, is reported on its own.

   The same model seeds for both; their accuracies must agree within the spread over models.

3. **Equal accuracy of a whole distillation**: DC run for 200 iterations at the reference
   settings in float32 and with the default passes (both stored in ``results/``, see their
   README), evaluated under the same float32 protocol with 10 models. Read from the stored
   evaluations and printed beside the timings (the runs take 10 to 50 minutes, too long for this
   script).

Ratios use the median of ``--repeats`` timings; every timing is kept in the JSON.

    python benchmarks/bench_speed.py                 # about 20 minutes on 2 idle cores
    python benchmarks/bench_speed.py --quick         # a 2-minute smoke run (short evaluations)

Writes benchmarks/results/speed_<device>.json (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gmlib.classic_augment import classic_per_image, sample_classic
from gmlib.data import load_dataset
from gmlib.distances import get_distance
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.first_order import EXACT, FirstOrder, first_order_for
from gmlib.methods.dc import DCMethod
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dc_reference import reference_outer_step, reference_train_network
from gmlib.methods.inner_loop import train_inner
from gmlib.networks import get_network
from gmlib.randomness import iteration_generator
from gmlib.runinfo import cpu_model, git_commit, library_versions
from gmlib.synthetic import load_synthetic
from gmlib.training import apply_schedule, model_seeds, protocol_sgd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
STORED_SET = ROOT / "results" / "dc_mnist_ipc1_paper" / "synthetic.pt"
# The 200-iteration runs of the equal-accuracy check (section 3): float32 and the default precision.
DISTILL_CHECK = {"fp32": ROOT / "results" / "dc_mnist_ipc1_paper" / "evaluation_200.json",
                 "default": ROOT / "results" / "dc_mnist_ipc1_paper_compiled" / "evaluation_200.json"}
PLAIN_TEST_BATCH = 256
NETWORK = {"width": 128}  # the papers' ConvNet (instance norm, average pooling)


def provenance(benchmark: str) -> dict[str, Any]:
    """The fields a benchmark's JSON starts with: what ran, from which commit, when, where."""
    return {"benchmark": benchmark, "command": " ".join(["python", *sys.argv]), "git_commit": git_commit()[0],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "threads": torch.get_num_threads(), "versions": library_versions()}


def write_report(report: dict[str, Any], out: Path, started: float, print_report: Callable[[dict], None]) -> dict:
    """Add the wall-clock seconds since ``started``, write the JSON to ``out`` and print it."""
    report["wall_seconds"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"wrote {out}")
    return report


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(paths: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each path, ``repeats`` times, the order reversed every other round (load drift)."""
    runs: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            runs[name].append(timed(paths[name]))
    return runs


# --------------------------------------------------------------------------------------------
# 1. DC's outer iteration
# --------------------------------------------------------------------------------------------


def matching_paths(dataset, ipc: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """For each path, the timed pieces of one iteration: 'step' (a fresh network, the real batches
    and one outer step) and, when DC trains between steps, 'inner' (one inner phase)."""
    config = MatchingConfig(ipc=ipc, network_kwargs=NETWORK)
    outer_loop, inner_loop = config.loops
    variants = {"gmlib exact": config.replace(precision="fp32", compile=False), "gmlib": config}
    methods = {name: DCMethod(dataset, variant, 0, torch.device("cpu")) for name, variant in variants.items()}
    for method in methods.values():  # time one outer step (the passes are resolved for the whole run)
        method.config = method.config.replace(outer_loop=1)
    images = methods["gmlib"].synthetic.images.detach().clone()
    labels = methods["gmlib"].synthetic.labels
    distance = get_distance(config.distance)
    counter = iter(range(10**6))

    def plain_step() -> None:
        generator = iteration_generator(1, next(counter))
        net = get_network("convnet", 1, 10, 28, seed=generator.initial_seed() % 2**31, **NETWORK)
        reference_outer_step(net, images, labels, list(dataset.class_batches(config.batch_real, generator)), distance,
                             lr_img=config.lr_img, momentum=config.momentum_img)

    def gmlib_step(method: DCMethod) -> Callable[[], Any]:
        return lambda: method.iteration(next(counter), iteration_generator(1, next(counter)))

    paths: dict[str, dict[str, Callable[[], Any]]] = {"plain": {"step": plain_step}}
    paths.update({name: {"step": gmlib_step(method)} for name, method in methods.items()})
    if outer_loop > 1:
        def inner_phase(method: DCMethod | None) -> Callable[[], Any]:
            def run() -> None:
                generator = iteration_generator(2, next(counter))
                net = get_network("convnet", 1, 10, 28, seed=1, **NETWORK)
                if method is None:
                    reference_train_network(net, images, labels, epochs=inner_loop, batch_size=config.batch_train,
                                            lr=config.lr_net, generator=generator)
                else:
                    train_inner(net, images, labels, epochs=inner_loop, batch_size=config.batch_train,
                                lr=config.lr_net, generator=generator, chunk_size=method.chunk_size,
                                passes=method.passes)
            return run

        paths["plain"]["inner"] = inner_phase(None)
        for name, method in methods.items():
            paths[name]["inner"] = inner_phase(method)
    return paths


def real_gradient_agreement(dataset) -> dict[str, float]:
    """How far the default precision moves the real-gradient target on one network and batch:
    relative error and cosine against float32 (all parameters together)."""
    from gmlib.methods.dc_variants import real_gradient

    net = get_network("convnet", 1, 10, 28, seed=3, **NETWORK)
    params = list(net.parameters())
    batch = dataset.class_batches(256, torch.Generator().manual_seed(3))[4]
    flat = {name: torch.cat([g.flatten() for g in real_gradient(net, params, batch, 4, 32, passes)])
            for name, passes in (("fp32", EXACT), ("bf16", FirstOrder("bf16")))}
    difference = (flat["bf16"] - flat["fp32"]).norm() / flat["fp32"].norm()
    return {"relative_error": float(difference), "cosine": float(F.cosine_similarity(flat["bf16"], flat["fp32"], dim=0))}


def describe_passes(dataset, ipc: int) -> str:
    return DCMethod(dataset, MatchingConfig(ipc=ipc, network_kwargs=NETWORK), 0, torch.device("cpu")).passes.describe()


def time_matching(dataset, ipc: int, repeats: int) -> dict[str, Any]:
    outer_loop, inner_loop = MatchingConfig(ipc=ipc).loops
    paths = matching_paths(dataset, ipc)
    warm_up = {name: sum(timed(piece) for piece in pieces.values()) for name, pieces in paths.items()}  # and compile
    runs = {piece: interleaved({name: pieces[piece] for name, pieces in paths.items()}, repeats)
            for piece in paths["plain"]}
    seconds = {name: outer_loop * median(runs["step"][name])
               + (outer_loop - 1) * (median(runs["inner"][name]) if "inner" in runs else 0.0) for name in paths}
    return {"ipc": ipc, "outer_loop": outer_loop, "inner_loop": inner_loop, "batch_real": 256,
            "passes": describe_passes(dataset, ipc), "warm_up_seconds": warm_up,
            "seconds_per_iteration": seconds, "runs_seconds": runs,
            "speedup_over_plain": {name: seconds["plain"] / s for name, s in seconds.items()}}


# --------------------------------------------------------------------------------------------
# 2. The evaluation protocol
# --------------------------------------------------------------------------------------------


def plain_augment(images, generator: torch.Generator, config: EvalConfig):
    """The classic MNIST augmentation one image at a time, as the reference does it."""
    return classic_per_image(images, sample_classic(images.shape, generator, config.classic), config.classic)


def plain_step(net, optimizer, x, y) -> None:
    """One float32 SGD step on the whole batch."""
    optimizer.zero_grad()
    F.cross_entropy(net(x), y).backward()
    optimizer.step()


def plain_test_accuracy(net, test_images, test_labels) -> float:
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum())
                      for x, y in zip(test_images.split(PLAIN_TEST_BATCH), test_labels.split(PLAIN_TEST_BATCH)))
    return correct / len(test_images)


def plain_network(config: EvalConfig, index: int):
    """Model ``index``'s network (gmlib's seeds for it), its optimiser and its data generator."""
    init_seed, data_seed = model_seeds(0, index)
    net = get_network(config.network, 1, 10, 28, seed=init_seed, **dict(config.network_kwargs))
    return net, protocol_sgd(net.parameters(), config), torch.Generator().manual_seed(data_seed)


def plain_evaluate_one(images, labels, test_images, test_labels, config: EvalConfig, index: int) -> float:
    """Model ``index`` (gmlib's seeds for it) trained the straightforward way and tested."""
    net, optimizer, generator = plain_network(config, index)
    net.train()
    for epoch in range(config.num_epochs):
        apply_schedule(optimizer, epoch, config)
        order = torch.randperm(len(images), generator=generator)
        for batch in order.split(config.batch_size):
            plain_step(net, optimizer, plain_augment(images[batch], generator, config), labels[batch])
    return plain_test_accuracy(net, test_images, test_labels)


def time_evaluation(dataset, models: int, epochs: int | None) -> dict[str, Any]:
    syn = load_synthetic(STORED_SET)
    images, labels = syn.detached()
    config = EvalConfig(network_kwargs=NETWORK, augment="mnist", epochs=epochs)
    test_images, test_labels = dataset.test_images, dataset.test_labels
    accuracies: dict[str, list[float]] = {"plain": [], "gmlib": []}
    runs: dict[str, list[float]] = {"plain": [], "gmlib": []}
    # What one evaluate_set call of all the models would run ('auto' weighs the whole job).
    net = get_network(config.network, 1, 10, 28, seed=0, **dict(config.network_kwargs))
    passes = first_order_for("auto", "auto", "cpu", net, models * (config.num_epochs * len(images) + len(test_images)))
    start = time.perf_counter()  # the warm-up: compiles, once per process, when compiling
    # 48 test images: a full chunk of 32 and the last, smaller chunk of the 10,000 (16).
    evaluate_set(images, labels, test_images[:48], test_labels[:48], dataclasses.replace(config, epochs=1), 1, 0,
                 precision=passes.precision, compile=passes.compile)
    warm_up = time.perf_counter() - start
    for k in range(models):  # interleaved model by model
        for name in ("plain", "gmlib") if k % 2 == 0 else ("gmlib", "plain"):
            start = time.perf_counter()
            if name == "plain":
                accuracies[name].append(plain_evaluate_one(images, labels, test_images, test_labels, config, k))
            else:
                result = evaluate_set(images, labels, test_images, test_labels, config, 1, 0, first_model=k,
                                      precision=passes.precision, compile=passes.compile)
                accuracies[name] += result.accuracies
            runs[name].append(time.perf_counter() - start)
    seconds = {name: median(values) for name, values in runs.items()}
    summary = {name: {"mean": statistics.fmean(a), "std": statistics.pstdev(a)} for name, a in accuracies.items()}
    spread = max(summary["plain"]["std"], summary["gmlib"]["std"])
    return {"set": str(STORED_SET.relative_to(ROOT)), "models": models, "epochs": config.num_epochs,
            "augment": config.augment, "test_images": len(test_images), "gmlib_passes": passes.describe(),
            "gmlib_warm_up_seconds": warm_up,
            "seconds_per_model": seconds, "runs_seconds": runs, "speedup_over_plain": seconds["plain"] / seconds["gmlib"],
            "accuracies": accuracies, "accuracy": summary,
            "equal_accuracy": abs(summary["plain"]["mean"] - summary["gmlib"]["mean"]) <= spread}


# --------------------------------------------------------------------------------------------
# 3. The stored 200-iteration check
# --------------------------------------------------------------------------------------------


def distillation_check() -> dict[str, Any]:
    """The two stored 200-iteration runs' evaluations (float32 protocol), or what is missing."""
    found = {}
    for name, path in DISTILL_CHECK.items():
        if not path.exists():
            return {"missing": str(path.relative_to(ROOT))}
        result = json.loads(path.read_text())["results"]["convnet"]
        found[name] = {"file": str(path.relative_to(ROOT)), "mean": result["mean"], "std": result["std"],
                       "models": len(result["accuracies"])}
    spread = max(found["fp32"]["std"], found["default"]["std"])
    found["equal_accuracy"] = abs(found["fp32"]["mean"] - found["default"]["mean"]) <= spread
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per path and piece (median)")
    parser.add_argument("--models", type=int, default=10, help="evaluation models per path (at least 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, ipc 1 only, 2 models of 20 epochs (ratios not meaningful)")
    parser.add_argument("--out", default=None, help="JSON report (default: benchmarks/results/speed_cpu.json)")
    args = parser.parse_args(argv)
    repeats, models, epochs, ipcs = args.repeats, args.models, None, (1, 10)
    if args.quick:
        repeats, models, epochs, ipcs = 1, 2, 20, (1,)
    out = Path(args.out or RESULTS / ("speed_cpu_quick.json" if args.quick else "speed_cpu.json"))
    dataset = load_dataset("mnist")
    started = time.perf_counter()
    report: dict[str, Any] = {
        **provenance("speed"),
        "data": "MNIST (real images); network: ConvNet width 128, instance norm, average pooling",
        "real_gradient_agreement": real_gradient_agreement(dataset),
        "matching": [time_matching(dataset, ipc, repeats) for ipc in ipcs],
        "evaluation": time_evaluation(dataset, models, epochs),
        "distillation_check": distillation_check(),
    }
    return write_report(report, out, started, print_report)


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['cpu']}, {report['threads']} threads, torch {report['versions']['torch']}, commit {report['git_commit']}")
    agreement = report["real_gradient_agreement"]
    print(f"real-gradient target, default vs float32: relative error {agreement['relative_error']:.1e}, "
          f"cosine {agreement['cosine']:.6f}")
    for row in report["matching"]:
        seconds, ratio = row["seconds_per_iteration"], row["speedup_over_plain"]
        print(f"DC iteration, ipc {row['ipc']} (loops {row['outer_loop']}/{row['inner_loop']}; gmlib {row['passes']}, "
              f"warm-up incl. compiling {row['warm_up_seconds']['gmlib']:.0f} s): "
              + ", ".join(f"{name} {seconds[name]:.2f} s ({ratio[name]:.2f}x)" for name in seconds))
    ev = report["evaluation"]
    acc = ev["accuracy"]
    print(f"evaluation per model ({ev['epochs']} epochs, {ev['augment']} augmentation, {ev['test_images']} test images): "
          f"plain {ev['seconds_per_model']['plain']:.1f} s, gmlib ({ev['gmlib_passes']}) "
          f"{ev['seconds_per_model']['gmlib']:.1f} s: {ev['speedup_over_plain']:.2f}x")
    print(f"  accuracy over {ev['models']} models each: plain {100 * acc['plain']['mean']:.2f} +- "
          f"{100 * acc['plain']['std']:.2f} %, gmlib {100 * acc['gmlib']['mean']:.2f} +- {100 * acc['gmlib']['std']:.2f} % "
          f"-> {'equal within the spread' if ev['equal_accuracy'] else 'DIFFERENT'}")
    check = report["distillation_check"]
    if "missing" in check:
        print(f"200-iteration DC check: not stored yet ({check['missing']})")
    else:
        print(f"200-iteration DC runs (stored), float32 protocol, {check['fp32']['models']} models: fp32 "
              f"{100 * check['fp32']['mean']:.2f} +- {100 * check['fp32']['std']:.2f} %, default "
              f"{100 * check['default']['mean']:.2f} +- {100 * check['default']['std']:.2f} % -> "
              f"{'equal within the spread' if check['equal_accuracy'] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
