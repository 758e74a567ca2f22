"""How long one outer iteration of gradient matching (DC) takes: gmlib vs the plain reference.

Both versions run in the same process on the same inputs:

* ``reference``: :mod:`gmlib.methods.dc_reference` (the per-class loop written as plainly as
  possible: whole real batches, one backward of the summed loss, plain inner-loop SGD);
* ``gmlib``: :func:`gmlib.methods.dc.distill` as a user calls it (on CPU: the loop engine with the
  real batches and the inner-loop batches in cache-sized chunks, one backward per class; on
  CUDA: the batched engine, vmap over classes).

Data: RANDOM TENSORS shaped like MNIST (1x28x28, 10 classes), so only the timings mean anything.
Network: DC's ConvNet (width 128, instance norm). Measured:

1. seconds per outer iteration, end to end: ipc 1 with DC's loops (1 outer step); ipc 10 with
   2 outer steps and 5 inner epochs on CPU (DC: 10 and 50; the GPU run uses DC's); on CPU with
   batch_real 64 instead of 256, to stay within minutes;
2. a breakdown of one outer step (same batch_real) into real-batch gradients, synthetic
   gradients with graph, distance, double backward and image step, plus seconds per inner-loop
   epoch (the network updates); it predicts 1 (reported next to it, as a check);
3. the real-batch gradients at the reference batch_real 256 (whole batches vs chunks; 2 classes
   timed, scaled to 10), which dominate on CPU; one matching step through each of gmlib's two
   engines (loop, batched = vmap); on CPU, 1 thread vs torch's default (busy cores);
4. seconds per iteration EXTRAPOLATED to the reference settings from 2 and 3:
   ``outer_loop x (real@256 + synthetic + distance + double backward + image step)
   + (outer_loop - 1) x inner_loop x epoch`` with DC's loops, ipc 1 -> (1, 1), ipc 10 -> (10, 50).

    python benchmarks/bench_matching.py --threads 1     # CPU: about 4-5 minutes on 2 busy cores
    python benchmarks/bench_matching.py --device cuda   # batch_real 256 and DC's loops directly

On a CPU that other jobs share, pass ``--threads 1``: more threads than free cores wait for each
other and measure the load rather than the code (the 'threads' figure shows how much).

Writes benchmarks/results/matching_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gmlib.data import ImageDataset
from gmlib.distances import get_distance
from gmlib.methods.dc import distill, matching_loss_backward, resolve_engine
from gmlib.methods.dc_config import MatchingConfig, dc_loops
from gmlib.methods.dc_reference import reference_outer_step, reference_train_network
from gmlib.methods.dc_variants import real_gradient
from gmlib.methods.inner_loop import train_inner
from gmlib.networks import get_network
from gmlib.randomness import iteration_generator
from gmlib.runinfo import cpu_model, library_versions, resolve_device
from gmlib.training import CPU_CHUNK_SIZE

CHANNELS, SIZE, CLASSES = 1, 28, 10
PER_CLASS = 300  # random "training" images per class (enough for batch_real 256)
REFERENCE_BATCH_REAL = 256
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before --threads changes it
COMPONENTS = ("real_gradients", "synthetic_gradients", "distance", "double_backward", "image_step")


def best(values) -> float:
    """The estimator: the fastest of the repeats. On a shared machine other jobs only ever add
    time, so the minimum is the least disturbed measurement (as timeit's documentation advises);
    every repeat is kept in the JSON."""
    return min(values)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def random_dataset(device: torch.device) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat(PER_CLASS)
    images = torch.randn(len(labels), CHANNELS, SIZE, SIZE, generator=g)
    test_labels = torch.arange(CLASSES).repeat(2)
    test_images = torch.randn(len(test_labels), CHANNELS, SIZE, SIZE, generator=g)
    dataset = ImageDataset("mnist", images, labels, test_images, test_labels, (0.0,), (1.0,),
                           [str(c) for c in range(CLASSES)])
    return dataset.to(device)


# --------------------------------------------------------------------------------------------
# 1. Whole outer iterations
# --------------------------------------------------------------------------------------------


def reference_iteration(dataset: ImageDataset, config: MatchingConfig, images: torch.Tensor, seed: int,
                        device: torch.device) -> torch.Tensor:
    """One outer iteration built from matching_reference: fresh net, outer steps, inner training."""
    outer_loop, inner_loop = config.loops
    generator = iteration_generator(seed, 0)
    net = get_network("convnet", CHANNELS, CLASSES, SIZE, seed=1, **dict(config.network_kwargs)).to(device)
    labels = torch.arange(CLASSES, device=device).repeat_interleave(config.ipc)
    distance, buffer = get_distance(config.distance), None
    for t in range(outer_loop):
        real = dataset.class_batches(config.batch_real, generator)
        step = reference_outer_step(net, images, labels, list(real), distance, lr_img=config.lr_img,
                                    momentum=config.momentum_img, momentum_buffer=buffer)
        images, buffer = step.images, step.momentum_buffer
        if t < outer_loop - 1:
            reference_train_network(net, images, labels, epochs=inner_loop, batch_size=config.batch_train,
                                    lr=config.lr_net, generator=generator)
    return images


def time_iterations(dataset: ImageDataset, config: MatchingConfig, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds per outer iteration, end to end, for both versions (alternating order vs load drift)."""
    runs: dict[str, list[float]] = {"reference": [], "gmlib": []}
    images = torch.randn(CLASSES * config.ipc, CHANNELS, SIZE, SIZE, device=device)
    for repeat in range(repeats):
        order = ["reference", "gmlib"] if repeat % 2 == 0 else ["gmlib", "reference"]
        for name in order:
            if name == "reference":
                runs[name].append(timed(lambda: reference_iteration(dataset, config, images, repeat, device), device))
            else:
                sync(device)
                result = distill(dataset, config.replace(iterations=1), seed=repeat, device=device, progress=False)
                runs[name].append(result.history.seconds[0])  # the iteration itself, without set-up
    seconds = {name: best(values) for name, values in runs.items()}
    return {"seconds": seconds, "runs": runs, "speedup_gmlib_over_reference": seconds["reference"] / seconds["gmlib"],
            "outer_loop": config.loops[0], "inner_loop": config.loops[1], "batch_real": config.batch_real}


# --------------------------------------------------------------------------------------------
# 2. Breakdown of one outer step (timed replicas of the two versions' class loops)
# --------------------------------------------------------------------------------------------


def step_breakdown(net, images: torch.Tensor, ipc: int, real: torch.Tensor, chunk_size: int | None,
                   backward_per_class: bool, device: torch.device) -> dict[str, float]:
    """One outer step with a timer around each part. ``chunk_size``/``backward_per_class`` = gmlib's
    choices; None/False = the reference's (whole real batches, one backward of the summed loss)."""
    times = dict.fromkeys(COMPONENTS, 0.0)
    params = list(net.parameters())
    distance = get_distance("ours")
    images = images.detach().clone().requires_grad_(True)
    optimizer = torch.optim.SGD([images], lr=0.1, momentum=0.5)
    total = 0.0

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times[name] += time.perf_counter() - start
        return out

    for c in range(len(real)):
        g_real = clock("real_gradients", lambda: real_gradient(net, params, real[c], c, chunk_size))
        syn = images[c * ipc:(c + 1) * ipc]
        labels = torch.full((ipc,), c, device=device)
        g_syn = clock("synthetic_gradients", lambda: torch.autograd.grad(
            F.cross_entropy(net(syn), labels), params, create_graph=True))
        loss = clock("distance", lambda: distance(g_syn, g_real))
        if backward_per_class:
            clock("double_backward", loss.backward)
        else:
            total = total + loss
    if not backward_per_class:
        clock("double_backward", lambda: total.backward())
    clock("image_step", optimizer.step)
    return times


def inner_epoch_seconds(net, images: torch.Tensor, chunk_size: int | None, epochs: int, repeats: int,
                        device: torch.device) -> dict[str, float]:
    """Seconds per inner-loop epoch (the network updates) of both versions, best of ``repeats``."""
    labels = torch.arange(CLASSES, device=device).repeat_interleave(len(images) // CLASSES)
    args = dict(epochs=epochs, batch_size=256, lr=0.01)
    versions = {
        "reference": lambda: reference_train_network(net, images, labels, generator=torch.Generator().manual_seed(0),
                                                     **args),
        "gmlib": lambda: train_inner(net, images, labels, generator=torch.Generator().manual_seed(0),
                                     chunk_size=chunk_size, **args),
    }
    runs: dict[str, list[float]] = {name: [] for name in versions}
    for repeat in range(repeats):
        for name in (list(versions) if repeat % 2 == 0 else list(versions)[::-1]):
            runs[name].append(timed(versions[name], device) / epochs)
    return {name: best(values) for name, values in runs.items()}


def time_breakdown(dataset: ImageDataset, ipc: int, batch_real: int, width: int, gmlib_chunk: int | None,
                   epochs: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Per-outer-step component seconds (best over repeats) and seconds per inner-loop epoch."""
    net = get_network("convnet", CHANNELS, CLASSES, SIZE, seed=0, width=width).to(device)
    images = torch.randn(CLASSES * ipc, CHANNELS, SIZE, SIZE, device=device)
    real = dataset.class_batches(batch_real, torch.Generator().manual_seed(0))
    runs: dict[str, list[dict[str, float]]] = {"reference": [], "gmlib": []}
    for repeat in range(repeats):
        for name in (["reference", "gmlib"] if repeat % 2 == 0 else ["gmlib", "reference"]):
            gmlib = name == "gmlib"
            runs[name].append(step_breakdown(net, images, ipc, real, gmlib_chunk if gmlib else None, gmlib, device))
    per_step = {name: {part: best(r[part] for r in values) for part in COMPONENTS}
                for name, values in runs.items()}
    epoch = inner_epoch_seconds(net, images.detach(), gmlib_chunk, epochs, repeats, device)
    return {"ipc": ipc, "batch_real": batch_real, "outer_step_seconds": per_step, "inner_epoch_seconds": epoch}


# --------------------------------------------------------------------------------------------
# 3. Real-batch gradients at the reference batch size: chunks and vmap
# --------------------------------------------------------------------------------------------


def time_real_gradients(dataset: ImageDataset, batch_real: int, width: int, chunks: list[int | None],
                        classes: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds for the real-batch gradients of ALL classes of one outer step, per chunk size.

    Every class costs the same (same batch size, same network), so ``classes`` of them are timed
    and the time is scaled to the 10 classes. On GPU also one vmapped pass over all classes (the
    batched engine's way); on CPU that would hold GBs of activations (see the engines figure).
    """
    from torch.func import functional_call, grad, vmap

    net = get_network("convnet", CHANNELS, CLASSES, SIZE, seed=0, width=width).to(device)
    params = list(net.parameters())
    real = dataset.class_batches(batch_real, torch.Generator().manual_seed(0))
    named = {n: p.detach() for n, p in net.named_parameters()}

    def loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x,)), y)

    scale = CLASSES / classes
    variants: dict[str, Callable[[], Any]] = {
        f"loop_chunk_{c or 'whole'}": (lambda c=c: [real_gradient(net, params, real[k], k, c) for k in range(classes)])
        for c in chunks
    }
    if device.type == "cuda":
        labels = torch.arange(CLASSES, device=device)[:, None].expand(-1, real.shape[1])
        variants["vmap_all_classes"] = lambda: vmap(grad(loss), in_dims=(None, 0, 0))(named, real, labels)
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        names = list(variants) if repeat % 2 == 0 else list(variants)[::-1]
        for name in names:
            seconds = timed(variants[name], device)
            runs[name].append(seconds if name == "vmap_all_classes" else seconds * scale)
    return {"batch_real": batch_real, "classes_timed": classes, "seconds_all_classes": {n: best(v) for n, v in runs.items()},
            "runs": runs}


def time_threads(dataset: ImageDataset, width: int, gmlib_chunk: int | None, repeats: int) -> dict[str, Any]:
    """Real-batch gradient of one class at batch_real 256 with 1 thread and with torch's default,
    whole batch vs gmlib's chunks: on a CPU shared with other jobs, threads that wait for each
    other can cost more than they bring (the figure depends on the load at that moment)."""
    net = get_network("convnet", CHANNELS, CLASSES, SIZE, seed=0, width=width)
    params = list(net.parameters())
    real = dataset.class_batches(REFERENCE_BATCH_REAL, torch.Generator().manual_seed(0))[0]
    default = torch.get_num_threads()
    results: dict[str, float] = {}
    try:
        for threads in sorted({1, TORCH_DEFAULT_THREADS}):
            torch.set_num_threads(threads)
            for chunk in (None, gmlib_chunk):
                times = [timed(lambda: real_gradient(net, params, real, 0, chunk), torch.device("cpu"))
                         for _ in range(repeats)]
                results[f"threads_{threads}_chunk_{chunk or 'whole'}"] = best(times)
    finally:
        torch.set_num_threads(default)
    return {"seconds_one_class_batch_real_256": results, "load_average_now": load_average()}


def time_matching_engines(dataset: ImageDataset, ipc: int, batch_real: int, width: int, gmlib_chunk: int | None,
                          repeats: int, device: torch.device) -> dict[str, float]:
    """One matching step (losses + backward) through the library's two engines."""
    net = get_network("convnet", CHANNELS, CLASSES, SIZE, seed=0, width=width).to(device)
    images = torch.randn(CLASSES * ipc, CHANNELS, SIZE, SIZE, device=device, requires_grad=True)
    real = dataset.class_batches(batch_real, torch.Generator().manual_seed(0))
    distance = get_distance("ours")
    runs: dict[str, list[float]] = {"loop": [], "batched": []}
    for repeat in range(repeats):
        for engine in (["loop", "batched"] if repeat % 2 == 0 else ["batched", "loop"]):
            chunk = gmlib_chunk if engine == "loop" else None
            runs[engine].append(timed(lambda: matching_loss_backward(net, images, ipc, real, distance, engine=engine,
                                                                     chunk_size=chunk), device))
    return {engine: best(values) for engine, values in runs.items()}


# --------------------------------------------------------------------------------------------
# 4. Extrapolation to the reference settings, and the report
# --------------------------------------------------------------------------------------------


def predict(breakdown: dict[str, Any], real_gradients: dict[str, float] | None, outer_loop: int,
            inner_loop: int) -> dict[str, float]:
    """Seconds per iteration from the parts: ``outer_loop x step + (outer_loop - 1) x inner_loop x
    epoch``; ``real_gradients`` (per version) replaces the breakdown's real-gradient time (to
    extrapolate to batch_real 256)."""
    out = {}
    for name in ("reference", "gmlib"):
        step = dict(breakdown["outer_step_seconds"][name])
        if real_gradients is not None:
            step["real_gradients"] = real_gradients[name]
        out[name] = outer_loop * sum(step.values()) + (outer_loop - 1) * inner_loop * breakdown["inner_epoch_seconds"][name]
    out["speedup_gmlib_over_reference"] = out["reference"] / out["gmlib"]
    return out


def load_average() -> float | None:
    """The 1-minute load average: above the core count, other jobs competed for the CPU."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def hardware(device: torch.device) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"device": str(device), "cpu": cpu_model(), "cores": cores, "torch_threads": torch.get_num_threads(),
            "torch_default_threads": TORCH_DEFAULT_THREADS}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument("--width", type=int, default=128, help="ConvNet width (default: DC's 128)")
    parser.add_argument("--batch-real", type=int, default=None,
                        help="real images per class in the end-to-end and breakdown runs (default: 64 on CPU, 256 on GPU)")
    parser.add_argument("--outer-loop", type=int, default=None,
                        help="outer steps of the end-to-end ipc 10 run (default: 2 on CPU, DC's 10 on GPU)")
    parser.add_argument("--inner-loop", type=int, default=None,
                        help="inner-loop epochs of the end-to-end ipc 10 run (default: 5 on CPU, DC's 50 on GPU)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each measurement (best reported)")
    parser.add_argument("--epochs", type=int, default=5, help="inner-loop epochs timed for the per-epoch figure")
    parser.add_argument("--classes-timed", type=int, default=2,
                        help="classes timed for the batch_real 256 figure, scaled to 10 (default: 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/matching_<device>.json)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    batch_real = args.batch_real or (REFERENCE_BATCH_REAL if on_gpu else 64)
    inner_loop_10 = args.inner_loop if args.inner_loop is not None else (dc_loops(10)[1] if on_gpu else 5)
    outer_loop_10 = args.outer_loop if args.outer_loop is not None else (dc_loops(10)[0] if on_gpu else 2)
    gmlib_chunk = CPU_CHUNK_SIZE if device.type == "cpu" else None  # what distill uses on this device
    started = time.perf_counter()
    load_at_start = load_average()
    dataset = random_dataset(device)
    base = MatchingConfig(batch_real=batch_real, network_kwargs={"width": args.width}, engine="auto")

    def stage(name: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {name}", file=sys.stderr, flush=True)

    # Warm-up (allocator, kernels): one small untimed step of each version.
    stage("warm-up")
    time_breakdown(dataset, 1, 16, args.width, gmlib_chunk, 1, 1, device)

    stage("end-to-end iterations")
    configs = {"ipc1": base.replace(ipc=1), "ipc10": base.replace(ipc=10, outer_loop=outer_loop_10, inner_loop=inner_loop_10)}
    iterations = {"ipc1": time_iterations(dataset, configs["ipc1"], args.repeats, device),
                  "ipc10": time_iterations(dataset, configs["ipc10"], args.repeats, device)}
    stage("breakdown")
    breakdown = {f"ipc{ipc}": time_breakdown(dataset, ipc, batch_real, args.width, gmlib_chunk, args.epochs,
                                             args.repeats, device) for ipc in (1, 10)}
    for key, config in configs.items():  # the breakdown's prediction of the end-to-end runs
        iterations[key]["predicted_from_breakdown"] = predict(breakdown[key], None, *config.loops)
    stage("real gradients at batch_real 256")
    chunks = [None, 32, 16] if device.type == "cpu" else [None]
    real_256 = time_real_gradients(dataset, REFERENCE_BATCH_REAL, args.width, chunks, args.classes_timed,
                                   args.repeats, device)
    stage("engines")
    engines = {f"ipc{ipc}": time_matching_engines(dataset, ipc, batch_real, args.width, gmlib_chunk, args.repeats, device)
               for ipc in (1, 10)}
    threads = None
    if device.type == "cpu":
        stage("threads")
        threads = time_threads(dataset, args.width, gmlib_chunk, args.repeats)
    seconds_256 = real_256["seconds_all_classes"]
    real_at_reference = {"reference": seconds_256["loop_chunk_whole"],
                         "gmlib": seconds_256[f"loop_chunk_{gmlib_chunk or 'whole'}"]}
    if resolve_engine("auto", device) == "batched":
        real_at_reference["gmlib"] = seconds_256["vmap_all_classes"]
    extrapolated = {f"ipc{ipc}": predict(breakdown[f"ipc{ipc}"], real_at_reference, *dc_loops(ipc)) for ipc in (1, 10)}
    stage("done")

    report = {
        "benchmark": "gmlib.methods.dc: seconds per DC outer iteration, gmlib vs the plain reference",
        "command": " ".join(["python", "benchmarks/bench_matching.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "load_average": {"start": load_at_start, "end": load_average()},
        "versions": library_versions(),
        "data": f"random tensors shaped like MNIST (1x28x28, 10 classes, {PER_CLASS} per class), NOT MNIST: timings only",
        "settings": {
            "network": "convnet", "width": args.width, "norm": "instancenorm", "distance": "ours",
            "batch_real_measured": batch_real, "batch_real_reference": REFERENCE_BATCH_REAL,
            "loops_measured": {"ipc1": list(dc_loops(1)), "ipc10": [outer_loop_10, inner_loop_10]},
            "loops_reference": {"ipc1": list(dc_loops(1)), "ipc10": list(dc_loops(10))},
            "gmlib_engine": resolve_engine("auto", device), "gmlib_chunk_size": gmlib_chunk,
            "repeats": args.repeats, "inner_epochs_timed": args.epochs,
        },
        "iteration_seconds_measured": iterations,
        "outer_step_breakdown_measured": breakdown,
        "real_gradients_at_batch_real_256": real_256,
        "matching_step_seconds_by_engine": engines,
        "threads": threads,
        "iteration_seconds_extrapolated_to_reference_settings": extrapolated,
        "extrapolation": "outer_loop x (real gradients at batch_real 256 + synthetic gradients + distance + double "
                         "backward + image step, from the breakdown) + (outer_loop - 1) x inner_loop x seconds per "
                         "inner epoch; DC's loops: ipc 1 -> (1, 1), ipc 10 -> (10, 50)",
        "estimator": "best (fastest) of the repeats; every repeat is kept under 'runs'",
        "caveat": "shared 2-core machine: other jobs may run on the same cores (see load_average); with more torch "
                  "threads than free cores, threads wait for each other (see 'threads')",
    }
    report["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"matching_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {
        "iteration_seconds_measured": {k: v["seconds"] for k, v in iterations.items()},
        "iteration_seconds_predicted_from_breakdown": {k: v["predicted_from_breakdown"] for k, v in iterations.items()},
        "outer_step_breakdown_measured": {k: v["outer_step_seconds"] for k, v in breakdown.items()},
        "inner_epoch_seconds": {k: v["inner_epoch_seconds"] for k, v in breakdown.items()},
        "real_gradients_at_batch_real_256": seconds_256,
        "matching_step_seconds_by_engine": engines,
        "threads": threads and threads["seconds_one_class_batch_real_256"],
        "iteration_seconds_extrapolated_to_reference_settings": extrapolated,
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} in {report['benchmark_seconds']} s")
    return report


if __name__ == "__main__":
    main()
