"""Seconds per iteration of distribution matching (DM) against gradient matching (DC), side by side.

Both methods run in the same process, on the same data, network and real batch size, through
their :class:`gmlib.run.loop.Method` (one iteration exactly as a run performs it, with the run's
seeding), alternating between the two so that a change in the machine's load hits both:

* DM: one fresh random network, one forward pass of the real images (no graph), one of the
  synthetic images, one first-order backward pass, one image step; eager, and compiled
  (``DMConfig.compile``: its first iteration, which compiles, is timed apart and not in the median);
* DC: its own loops for the ipc (1 image per class: one matching step; 10: ten matching steps with
  50 epochs of network training between them), each step a second-order backward pass per class.

Data: RANDOM TENSORS shaped like MNIST (1x28x28, 10 classes, 600 per class), so only the timings
mean anything. Defaults are the papers' settings (ConvNet width 128, 256 real images per class).

    python benchmarks/bench_dm_vs_dc.py --threads 1                      # CPU, about 10 minutes
    python benchmarks/bench_dm_vs_dc.py --device cuda --dc-iterations 5  # on a GPU

Writes benchmarks/results/dm_vs_dc_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gmlib.data import ImageDataset
from gmlib.methods.dc import DCMethod
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dm import DMConfig, DMMethod
from gmlib.randomness import global_rng_from, iteration_generator
from gmlib.runinfo import cpu_model, git_commit, library_versions, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"


def random_mnist(device: torch.device, per_class: int = 600) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(per_class)
    images = torch.randn(len(labels), 1, 28, 28, generator=g)
    return ImageDataset("mnist", images, labels, images[:100], labels[:100], (0.0,), (1.0,),
                        [str(c) for c in range(10)]).to(device)


def seconds_of_one_iteration(method, it: int) -> float:
    """One iteration as :func:`gmlib.run.loop.run` performs it (same seeding), timed."""
    if method.device.type == "cuda":
        torch.cuda.synchronize(method.device)
    began = time.perf_counter()
    generator = iteration_generator(method.seed, it)
    with global_rng_from(generator):
        method.iteration(it, generator)
    if method.device.type == "cuda":
        torch.cuda.synchronize(method.device)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--ipcs", type=int, nargs="+", default=[1, 10], choices=[1, 10],
                        help="images per class to time (default: 1 10)")
    parser.add_argument("--dm-iterations", type=int, default=5, help="timed DM iterations per ipc")
    parser.add_argument("--dc-iterations", type=int, default=3, help="timed DC iterations at 1 image per class")
    parser.add_argument("--dc-ipc10-iterations", type=int, default=1,
                        help="timed DC iterations at 10 images per class (each is long on a CPU)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the compiled DM (torch.compile needs a C++ compiler on a CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = random_mnist(device)
    network = {"width": args.width}
    rows = []
    for ipc in args.ipcs:
        dc_iterations = args.dc_iterations if ipc == 1 else args.dc_ipc10_iterations
        dm_config = DMConfig(ipc=ipc, batch_real=args.batch_real, network_kwargs=network)
        methods = {"dm": DMMethod(data, dm_config, 0, device),
                   "dc": DCMethod(data, MatchingConfig(ipc=ipc, batch_real=args.batch_real, network_kwargs=network),
                                  0, device)}
        counts = {"dm": args.dm_iterations, "dc": dc_iterations}
        row = {"ipc": ipc, "dc_loops": list(methods["dc"].config.loops)}
        if args.compile:
            methods["dm_compiled"] = DMMethod(data, dm_config.replace(compile=True), 0, device)
            counts["dm_compiled"] = args.dm_iterations
            row["dm_compiled_first_iteration_s"] = seconds_of_one_iteration(methods["dm_compiled"], 0)  # compiles
        seconds = {name: [] for name in methods}
        for it in range(max(counts.values())):  # alternate: the same load for every method
            for name, method in methods.items():
                if it < counts[name]:
                    seconds[name].append(seconds_of_one_iteration(method, it + 1))
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        row.update({f"{name}_seconds": values for name, values in seconds.items()})
        row.update({f"{name}_median_s": median for name, median in medians.items()})
        row["dc_over_dm"] = medians["dc"] / medians["dm"]
        line = (f"ipc {ipc:2d}: DM {medians['dm']:8.3f} s/iteration ({len(seconds['dm'])} timed), DC "
                f"{medians['dc']:8.3f} s/iteration ({len(seconds['dc'])} timed, loops {methods['dc'].config.loops}): "
                f"DC / DM = {row['dc_over_dm']:.1f}")
        if args.compile:
            row["dm_over_dm_compiled"] = medians["dm"] / medians["dm_compiled"]
            line += (f"; DM compiled {medians['dm_compiled']:8.3f} s/iteration (first, compiling: "
                     f"{row['dm_compiled_first_iteration_s']:.1f} s): {row['dm_over_dm_compiled']:.2f}x eager DM")
        rows.append(row)
        print(line, flush=True)
    report = {
        "benchmark": "dm_vs_dc", "command": " ".join(["python", *sys.argv]), "git_commit": git_commit()[0], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "cpu": cpu_model(), "threads": torch.get_num_threads(), "versions": library_versions(),
        "settings": {"width": args.width, "batch_real": args.batch_real, "data": "random tensors shaped like MNIST"},
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dm_vs_dc_{device.type}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
