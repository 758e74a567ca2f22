"""Which CPU speed levers pay off for the papers' ConvNet: memory layout, pooling, precision.

The three passes that dominate gmlib on a CPU, for DC's ConvNet (width 128, instance norm, average
pooling) on MNIST-shaped random tensors, each timed for every lever against the plain network
(NCHW, ``F.avg_pool2d``, float32) in the same run, alternating the order against load drift:

* ``test_pass``: inference over ``--images`` images in chunks of 32 (the evaluation's test pass);
* ``train_step``: forward and backward of one batch of 256 in chunks of 32 (evaluation training,
  DC's real-batch gradients and inner loop);
* ``double_backward``: the synthetic side of a matching step, 10 images, gradient with graph and
  its backward (DC's second-order pass).

Levers: ``channels_last`` (weights and inputs in NHWC), ``depthwise_pool`` (2x2 average pooling as
a fixed depthwise convolution, the same sums), ``bf16_autocast`` (test pass only: the CPU's
bfloat16 path). Each is reported as a speedup over the plain network with the largest output
difference, so a lever that is fast but changes the numbers shows it.

    python benchmarks/bench_cpu_levers.py            # about 2 minutes on 2 idle cores

Writes benchmarks/results/cpu_levers.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gmlib.networks import get_network
from gmlib.runinfo import cpu_model, git_commit, library_versions

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 32


class DepthwisePool(nn.Module):
    """2x2, stride-2 average pooling as a depthwise convolution with weights 1/4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = x.new_full((x.shape[1], 1, 2, 2), 0.25)
        return F.conv2d(x, weight, stride=2, groups=x.shape[1])


def network(lever: str) -> nn.Module:
    net = get_network("convnet", 1, 10, 28, seed=1, width=128, norm="instancenorm")
    if lever == "depthwise_pool":
        for block in net.modules():
            if isinstance(block, nn.Sequential) and hasattr(block, "pool"):
                block.pool = DepthwisePool()
    if lever == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    return net


def passes(net: nn.Module, lever: str, images: torch.Tensor, labels: torch.Tensor,
           test_images: int) -> dict[str, Callable[[], torch.Tensor]]:
    """The timed passes of one lever; each returns a tensor to compare with the plain network's."""
    fmt = torch.channels_last if lever == "channels_last" else torch.contiguous_format
    x = images.contiguous(memory_format=fmt)
    params = list(net.parameters())
    synthetic = x[:10].clone().requires_grad_(True)

    def test_pass() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=lever == "bf16_autocast"):
            return torch.cat([net(chunk).float() for chunk in x[:test_images].split(CHUNK)])

    def train_step() -> torch.Tensor:
        net.zero_grad(set_to_none=True)
        for chunk, target in zip(x[:256].split(CHUNK), labels[:256].split(CHUNK)):
            F.cross_entropy(net(chunk), target, reduction="sum").backward()
        return params[0].grad.detach().clone()

    def double_backward() -> torch.Tensor:
        synthetic.grad = None
        grads = torch.autograd.grad(F.cross_entropy(net(synthetic), labels[:10]), params, create_graph=True)
        sum((g ** 2).sum() for g in grads).backward()
        return synthetic.grad.detach().clone()

    named = {"test_pass": test_pass, "train_step": train_step, "double_backward": double_backward}
    return {name: fn for name, fn in named.items() if lever != "bf16_autocast" or name == "test_pass"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="images in the timed test pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per pass and lever (median)")
    parser.add_argument("--out", default=str(RESULTS / "cpu_levers.json"))
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(max(args.images, 256), 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (len(images),), generator=generator)
    levers = ("plain", "channels_last", "depthwise_pool", "bf16_autocast")
    runs = {lever: passes(network(lever), lever, images, labels, args.images) for lever in levers}
    outputs = {lever: {name: fn() for name, fn in fns.items()} for lever, fns in runs.items()}  # warm-up, compared
    seconds: dict[str, dict[str, list[float]]] = {lever: {name: [] for name in fns} for lever, fns in runs.items()}
    for repeat in range(args.repeats):
        for lever in levers if repeat % 2 == 0 else levers[::-1]:
            for name, fn in runs[lever].items():
                start = time.perf_counter()
                fn()
                seconds[lever][name].append(time.perf_counter() - start)
    median = {lever: {name: sorted(v)[len(v) // 2] for name, v in passes_.items()} for lever, passes_ in seconds.items()}
    report = {
        "benchmark": "cpu_levers", "command": " ".join(["python", *sys.argv]), "git_commit": git_commit()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "versions": library_versions(),
        "network": "convnet width 128, instancenorm, avgpool, 1x28x28 random inputs", "chunk": CHUNK,
        "test_images": args.images, "median_seconds": median, "runs_seconds": seconds,
        "speedup_over_plain": {lever: {name: median["plain"][name] / s for name, s in passes_.items()}
                               for lever, passes_ in median.items()},
        "max_abs_difference_from_plain": {lever: {name: float((out - outputs["plain"][name]).abs().max())
                                                  for name, out in outs.items()} for lever, outs in outputs.items()},
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    for lever in levers:
        cells = ", ".join(f"{name} {report['speedup_over_plain'][lever][name]:.2f}x "
                          f"(max diff {report['max_abs_difference_from_plain'][lever][name]:.1e})" for name in median[lever])
        print(f"{lever:15s} {cells}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
