"""Where one protocol evaluation's seconds go on a CPU, and the fastest it could be.

The job is :mod:`bench_speed`'s evaluation goal: one ConvNet (width 128) trained on the stored
1-image-per-class DC set under DC's protocol (1001 epochs of one batch of 10 with the MNIST
augmentation), then the 10,000 test images. Its three pieces are timed on their own, for the
plain loop of ``bench_speed`` (float32, whole batches, augmentation one image at a time) and for
gmlib's default passes (what ``evaluate_set`` picks for ten models; compiling is done once, in a
warm-up, and not counted):

* ``augmentation``: the 1001 augmented batches;
* ``training``: 1001 steps (forward, backward, SGD) on one augmented batch, the same work;
* ``test``: the test pass.

A third path, ``gmlib, conv``, is gmlib's with the layer that reads the images left a oneDNN
convolution in the compiled passes, where gmlib computes it as one matrix product: what that
lever is worth.

One whole model of each path, timed as ``bench_speed`` times it, checks that the pieces add up.

The floating-point operations of each piece are counted (``torch.utils.flop_counter``: the
convolutions and the linear layer, forward and backward) and divided by the seconds. To see how
far the machine allows a speedup to go, the network's biggest convolution (128 to 128 channels,
16 x 16) is timed at a large batch, forward alone and forward with backward, in float32 and in
bfloat16: the fastest of the four is the best throughput the machine's convolution kernels reach
on this network. ``floor_seconds`` is the time
the counted FLOPs need at that throughput with nothing else costing anything (augmentation,
pooling, normalisation, activations, optimiser all free), and ``largest_speedup`` the plain
time divided by it: no implementation of this evaluation on this machine beats it.

    python benchmarks/bench_eval_breakdown.py        # about 5 minutes on 2 idle cores

Writes benchmarks/results/eval_breakdown_cpu.json (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench_speed import (NETWORK, PLAIN_TEST_BATCH, RESULTS, STORED_SET, interleaved, median, plain_augment,
                         plain_evaluate_one, plain_network, plain_step, plain_test_accuracy, provenance,
                         write_report)
from gmlib.augment import augment
from gmlib.data import load_dataset
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.first_order import FirstOrder, first_order_for
from gmlib.synthetic import load_synthetic
from gmlib.training import test_accuracy, train_network

PIECES = ("augmentation", "training", "test")
CONV_BATCH = 256  # large enough for the convolution kernels' best throughput


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def job_flops(images, labels, test_images, config: EvalConfig) -> dict[str, int]:
    """FLOPs of the training steps and of the test pass (float32 network; precision does not
    change the count)."""
    net, _, _ = plain_network(config, 0)
    step = count_flops(lambda: F.cross_entropy(net(images), labels).backward())
    with torch.no_grad():
        test = count_flops(lambda: net(test_images[:PLAIN_TEST_BATCH])) * len(test_images) / PLAIN_TEST_BATCH
    return {"augmentation": 0, "training": step * config.num_epochs, "test": int(test)}


def best_convolution_throughput(repeats: int) -> dict[str, float]:
    """FLOP/s of the 128-to-128 convolution at 16 x 16, batch 256: forward alone (as in the test
    pass) and forward with backward (as in training), in float32 and in bfloat16."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    x = torch.randn(CONV_BATCH, 128, 16, 16, requires_grad=True)
    found = {}
    for dtype in (torch.float32, torch.bfloat16):
        for passes in ("forward", "forward_backward"):
            def run() -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    if passes == "forward":
                        with torch.no_grad():
                            conv(x)
                    else:
                        conv(x).float().sum().backward()
            flops = count_flops(run)  # also the warm-up
            found[f"{str(dtype).removeprefix('torch.')} {passes}"] = flops / median(interleaved({"": run}, repeats)[""])
    return found


def plain_pieces(images, labels, test_images, test_labels, config: EvalConfig) -> dict[str, Any]:
    net, optimizer, generator = plain_network(config, 0)
    x = plain_augment(images, generator, config)

    def train() -> None:
        for _ in range(config.num_epochs):
            plain_step(net, optimizer, x, labels)

    return {"augmentation": lambda: [plain_augment(images, generator, config) for _ in range(config.num_epochs)],
            "training": train, "test": lambda: plain_test_accuracy(net, test_images, test_labels)}


class ConvolutionKept(torch.nn.Conv2d):
    """``nn.Conv2d`` under another name, which gmlib's compiled passes never turn into a product."""


def gmlib_pieces(images, labels, test_images, test_labels, config: EvalConfig, passes: FirstOrder,
                 image_layer_product: bool = True) -> dict[str, Any]:
    """gmlib's pieces; ``image_layer_product=False`` keeps the compiled passes' first layer a oneDNN
    convolution instead of a matrix product (:class:`gmlib.first_order.PatchProductConv2d`)."""
    net, _, generator = plain_network(config, 0)
    if not image_layer_product:  # every convolution, whatever gmlib's rule for turning them
        for module in net.modules():
            if type(module) is torch.nn.Conv2d:
                module.__class__ = ConvolutionKept
    kind, classic = config.augment, config.classic
    x = augment(images, kind, generator, dsa_strategy=config.dsa_strategy, classic=classic)
    # The same steps on the fixed batch x ('none' alone would also change the protocol's epochs).
    unaugmented = dataclasses.replace(config, augment="none", epochs=config.protocol_epochs)
    if not image_layer_product:  # its own compiled graphs: compile them outside the timings
        warm = copy.deepcopy(net)
        train_network(warm, x, labels, dataclasses.replace(unaugmented, epochs=1), torch.Generator().manual_seed(0),
                      passes=passes)
        test_accuracy(warm, test_images[:48], test_labels[:48], passes=passes)
    return {"augmentation": lambda: [augment(images, kind, generator, dsa_strategy=config.dsa_strategy,
                                             classic=classic) for _ in range(config.num_epochs)],
            "training": lambda: train_network(net, x, labels, unaugmented, generator, passes=passes),
            "test": lambda: test_accuracy(net, test_images, test_labels, passes=passes)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per path and piece (median)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the protocol's 1001)")
    parser.add_argument("--out", default=None, help="JSON report (default: benchmarks/results/eval_breakdown_cpu.json)")
    args = parser.parse_args(argv)
    out = Path(args.out or RESULTS / "eval_breakdown_cpu.json")
    started = time.perf_counter()
    dataset = load_dataset("mnist")
    images, labels = load_synthetic(STORED_SET).detached()
    test_images, test_labels = dataset.test_images, dataset.test_labels
    config = EvalConfig(network_kwargs=NETWORK, augment="mnist", epochs=args.epochs)
    net, _, _ = plain_network(config, 0)
    passes = first_order_for("auto", "auto", "cpu", net, 10 * (config.num_epochs * len(images) + len(test_images)))
    evaluate_set(images, labels, test_images[:48], test_labels[:48], dataclasses.replace(config, epochs=1), 1, 0,
                 precision=passes.precision, compile=passes.compile)  # warm-up: compiles, as bench_speed does
    paths = {"plain": plain_pieces(images, labels, test_images, test_labels, config),
             "gmlib": gmlib_pieces(images, labels, test_images, test_labels, config, passes),
             "gmlib, conv": gmlib_pieces(images, labels, test_images, test_labels, config, passes, False)}
    runs = {piece: interleaved({name: paths[name][piece] for name in paths}, args.repeats) for piece in PIECES}
    seconds = {name: {piece: median(runs[piece][name]) for piece in PIECES} for name in paths}
    # One whole model each, as bench_speed times it: the pieces must add up to it.
    whole = interleaved({"plain": lambda: plain_evaluate_one(images, labels, test_images, test_labels, config, 1),
                         "gmlib": lambda: evaluate_set(images, labels, test_images, test_labels, config, 1, 0,
                                                       first_model=1, precision=passes.precision,
                                                       compile=passes.compile)}, 1)
    flops = job_flops(images, labels, test_images, config)
    conv = best_convolution_throughput(args.repeats)
    best = max(conv.values())
    floor = sum(flops.values()) / best
    plain_total = sum(seconds["plain"].values())
    report: dict[str, Any] = {
        **provenance("eval_breakdown"),
        "set": str(STORED_SET.name), "epochs": config.num_epochs, "test_images": len(test_images),
        "gmlib_passes": passes.describe(), "runs_seconds": runs, "seconds": seconds,
        "total_seconds": {name: sum(pieces.values()) for name, pieces in seconds.items()},
        "whole_model_seconds": {name: values[0] for name, values in whole.items()},
        "flops": flops,
        "tflops_per_second": {name: {piece: flops[piece] / seconds[name][piece] / 1e12 for piece in ("training", "test")}
                              for name in paths},
        "best_convolution_tflops_per_second": {dtype: value / 1e12 for dtype, value in conv.items()},
        "floor_seconds": floor, "largest_speedup": plain_total / floor,
        "speedup_now": plain_total / sum(seconds["gmlib"].values()),
    }
    return write_report(report, out, started, print_report)


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['cpu']}, {report['threads']} threads, torch {report['versions']['torch']}, commit {report['git_commit']}")
    print(f"one model, {report['epochs']} epochs + {report['test_images']} test images; gmlib: {report['gmlib_passes']}")
    print(f"{'piece':<14}{'GFLOP':>9}" + "".join(f"{name + ' s':>14}{'TFLOP/s':>9}" for name in report["seconds"]))
    for piece in PIECES:
        gflop = report["flops"][piece] / 1e9
        cells = "".join(f"{report['seconds'][name][piece]:>14.2f}"
                        + (f"{report['flops'][piece] / report['seconds'][name][piece] / 1e12:>9.3f}" if gflop else f"{'':>9}")
                        for name in report["seconds"])
        print(f"{piece:<14}{gflop:>9.0f}{cells}")
    print(f"{'total':<14}{sum(report['flops'].values()) / 1e9:>9.0f}"
          + "".join(f"{total:>14.2f}{'':>9}" for total in report["total_seconds"].values()))
    whole = report["whole_model_seconds"]
    print(f"{'whole model':<14}{'':>9}" + "".join((f"{whole[name]:>14.2f}" if name in whole else f"{'':>14}") + f"{'':>9}"
                                                  for name in report["seconds"]))
    conv = report["best_convolution_tflops_per_second"]
    print("convolution throughput (128->128, 16x16, batch 256): "
          + ", ".join(f"{dtype} {value:.3f} TFLOP/s" for dtype, value in conv.items()))
    print(f"floor at that throughput: {report['floor_seconds']:.1f} s per model -> at most "
          f"{report['largest_speedup']:.2f}x over plain (gmlib now {report['speedup_now']:.2f}x)")


if __name__ == "__main__":
    main()
