"""Does a caching allocator (jemalloc) speed up gradient matching on a CPU?

The glibc allocator hands large activation buffers back to the kernel and maps them again, so a
matching step spends part of its time in page faults. jemalloc keeps freed memory for reuse. It can
only be swapped in when a process starts (``LD_PRELOAD``), so this script runs the same workload in
fresh child processes with and without it, alternating, on random MNIST-shaped tensors:

* ``plain``: one DC outer step of :mod:`gmlib.methods.dc_reference` (whole batches of 256, float32);
* ``gmlib``: one outer step of :class:`gmlib.methods.dc.DCMethod` with its defaults.

Each child warms up (and compiles, if the defaults compile), then times ``--steps`` steps of each.

    python benchmarks/bench_allocator.py            # about 5 minutes on 2 idle cores

Writes benchmarks/results/allocator_cpu.json. Debian's jemalloc: ``apt-get install libjemalloc2``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def child(steps: int) -> dict[str, float]:
    """Median seconds of one outer step of each path in this process."""
    import torch

    from bench_matching import random_dataset
    from gmlib.distances import get_distance
    from gmlib.methods.dc import DCMethod
    from gmlib.methods.dc_config import MatchingConfig
    from gmlib.methods.dc_reference import reference_outer_step
    from gmlib.networks import get_network
    from gmlib.randomness import iteration_generator

    dataset = random_dataset(torch.device("cpu"))
    config = MatchingConfig(ipc=1, network_kwargs={"width": 128})
    method = DCMethod(dataset, config, 0, torch.device("cpu"))
    images, labels = method.synthetic.images.detach().clone(), method.synthetic.labels
    distance = get_distance(config.distance)

    def plain(k: int) -> None:
        generator = iteration_generator(1, k)
        net = get_network("convnet", 1, 10, 28, seed=k, width=128)
        reference_outer_step(net, images, labels, list(dataset.class_batches(256, generator)), distance)

    def gmlib(k: int) -> None:
        method.iteration(k, iteration_generator(2, k))

    seconds: dict[str, list[float]] = {"plain": [], "gmlib": []}
    for name, fn in (("plain", plain), ("gmlib", gmlib)):
        fn(10**6)  # warm-up (and compiling)
        for k in range(steps):
            start = time.perf_counter()
            fn(k)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per path in each child")
    parser.add_argument("--rounds", type=int, default=3, help="children per allocator, alternating")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "allocator_cpu.json"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps)))
        return {}
    if not Path(JEMALLOC).exists():
        raise SystemExit(f"jemalloc not found at {JEMALLOC}: apt-get install libjemalloc2")
    runs: dict[str, list[dict[str, float]]] = {"glibc": [], "jemalloc": []}
    for round_ in range(args.rounds):
        for allocator in ("glibc", "jemalloc") if round_ % 2 == 0 else ("jemalloc", "glibc"):
            env = dict(os.environ)
            if allocator == "jemalloc":
                env["LD_PRELOAD"] = JEMALLOC
            done = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)], env=env,
                                  check=True, capture_output=True, text=True)
            runs[allocator].append(json.loads(done.stdout.strip().splitlines()[-1]))
    from gmlib.runinfo import cpu_model, git_commit, library_versions

    median = {allocator: {path: statistics.median(r[path] for r in rounds) for path in ("plain", "gmlib")}
              for allocator, rounds in runs.items()}
    report = {
        "benchmark": "allocator", "command": " ".join(["python", *sys.argv]), "git_commit": git_commit()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "versions": library_versions(), "jemalloc": JEMALLOC,
        "workload": "one DC outer step, ipc 1, ConvNet width 128, batch_real 256, random MNIST-shaped tensors",
        "median_seconds_per_step": median, "runs": runs,
        "speedup_of_jemalloc": {path: median["glibc"][path] / median["jemalloc"][path] for path in ("plain", "gmlib")},
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    for path in ("plain", "gmlib"):
        print(f"{path}: glibc {median['glibc'][path]:.2f} s, jemalloc {median['jemalloc'][path]:.2f} s per step "
              f"({report['speedup_of_jemalloc'][path]:.2f}x)")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
