"""How long evaluating a synthetic set takes: seconds per model, one-by-one vs batched.

Measures, for MNIST-shaped data (1x28x28, 10 classes) and the papers' ConvNet (width 128,
instance norm), with DSA augmentation (the protocol's 1000-epoch setting):

* training seconds per epoch per model on a 10-image set (ipc 1) and a 100-image set (ipc 10),
  through :func:`gmlib.evaluate.evaluate_set`, for three ways of running it:
  ``sequential_whole_batches`` (the straightforward loop: one model after another, one
  forward/backward per batch), ``sequential`` (gmlib's default on CPU: the same, but each batch
  in cache-sized chunks of 32 with gradient accumulation) and ``batched`` (all models in one
  vmapped step); a short run (``--epochs``) extrapolated to 1000 epochs;
* DC's MNIST augmentation of one batch of 256 images: gmlib's batched exact version
  (:func:`gmlib.classic_augment.classic_augment`), the straightforward per-image loop it equals
  (:func:`gmlib.classic_augment.classic_per_image`: ``F.interpolate`` and ``scipy.ndimage.rotate`` one
  image at a time, as DC's code does) and gmlib 0.1's affine approximation;
* the test pass over 10,000 images per model: gmlib's :func:`gmlib.evaluate.test_accuracy`
  (inference mode, chunks of 32 on CPU), the same with chunks of 1000, and a straightforward
  loop (``torch.no_grad``, batches of 256, one ``.item()`` per batch).

The images are random tensors, not MNIST: only the timings mean anything; the accuracies are
recorded to show that the paths agree. Writes benchmarks/results/evaluate_<device>.json.

    python benchmarks/bench_evaluate.py            # about 3-4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from gmlib.classic_augment import MNIST_AFFINE, MNIST_REFERENCE, apply_classic, classic_per_image, sample_classic
from gmlib.dsa import dsa_strategy_for
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import choose_method, evaluate_set
from gmlib.networks import get_network
from gmlib.runinfo import cpu_model, library_versions, resolve_device
from gmlib.training import model_seeds, test_accuracy

CHANNELS, SIZE, CLASSES = 1, 28, 10
WHOLE_BATCHES = 1 << 30  # a chunk size no batch reaches: one forward/backward per batch

# How evaluate_set is called for each measured way of training.
TRAINING_VARIANTS: dict[str, dict[str, Any]] = {
    "sequential_whole_batches": {"batched": False, "chunk_size": WHOLE_BATCHES},
    "sequential": {"batched": False},
    "batched": {"batched": True},
}


def random_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, CHANNELS, SIZE, SIZE, generator=generator), torch.arange(n) % CLASSES


def time_training(ipc: int, config: EvalConfig, models: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Training seconds per epoch per model for every variant (test pass negligible: 10 images)."""
    generator = torch.Generator().manual_seed(ipc)
    images, labels = random_images(CLASSES * ipc, generator)
    tiny_test = random_images(CLASSES, generator)
    runs: dict[str, list[float]] = {name: [] for name in TRAINING_VARIANTS}
    accuracies: dict[str, list[float]] = {}
    for repeat in range(repeats):
        names = list(TRAINING_VARIANTS)
        for name in names if repeat % 2 == 0 else names[::-1]:  # alternate the order against load drift
            variant = TRAINING_VARIANTS[name]
            result = evaluate_set(images, labels, *tiny_test, config, models, seed=0, device=device, **variant)
            runs[name].append(result.seconds_per_model / config.num_epochs)
            accuracies[name] = result.accuracies
    per_epoch = {name: statistics.median(values) for name, values in runs.items()}
    baseline = per_epoch["sequential_whole_batches"]
    return {
        "set_size": CLASSES * ipc,
        "train_seconds_per_epoch_per_model": per_epoch,
        "runs_seconds_per_epoch_per_model": runs,
        "speedup_over_sequential_whole_batches": {name: baseline / value for name, value in per_epoch.items()},
        "accuracies": accuracies,
        "accuracies_agree": len({tuple(values) for values in accuracies.values()}) == 1,
    }


def straightforward_test_pass(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The textbook loop: no_grad, batches of 256, one .item() per batch."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, images.shape[0], 256):
            output = net(images[start : start + 256])
            correct += (output.argmax(dim=1) == labels[start : start + 256]).sum().item()
    return correct / images.shape[0]


def time_test_pass(config: EvalConfig, test_images: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds per model of the test pass over ``test_images`` images (both training paths test
    each model with test_accuracy), alternating the variants against load drift."""
    generator = torch.Generator().manual_seed(100)
    images, labels = (t.to(device) for t in random_images(test_images, generator))
    net = get_network(config.network, CHANNELS, CLASSES, SIZE, seed=model_seeds(0, 0)[0], **dict(config.network_kwargs))
    net = net.to(device)
    variants: dict[str, Callable[[], float]] = {
        "gmlib": lambda: test_accuracy(net, images, labels),
        "gmlib_chunks_of_1000": lambda: test_accuracy(net, images, labels, 1000),
        "straightforward": lambda: straightforward_test_pass(net, images, labels),
    }
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        names = list(variants)
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            runs[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "test_images": test_images,
        "seconds_per_model": seconds,
        "runs_seconds": runs,
        "variants": {
            "gmlib": "test_accuracy defaults: inference_mode, chunks of 32 on CPU (1024 on GPU), one .item() per pass",
            "gmlib_chunks_of_1000": "the same with chunks of 1000",
            "straightforward": "no_grad, batches of 256, one .item() per batch",
        },
        "speedup_gmlib_over_straightforward": seconds["straightforward"] / seconds["gmlib"],
    }


def time_classic_augmentation(batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds to augment one batch with DC's MNIST augmentation: batched vs per image."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, CHANNELS, SIZE, SIZE, generator=generator).to(device)
    ways: dict[str, Callable[[Any], torch.Tensor]] = {
        "batched_reference": lambda params: apply_classic(images, params, MNIST_REFERENCE),
        "per_image_reference": lambda params: classic_per_image(images, params, MNIST_REFERENCE),
    }
    seconds: dict[str, list[float]] = {name: [] for name in [*ways, "batched_gmlib_0_1_affine"]}
    for _ in range(repeats):  # interleaved, so that both see the same machine load
        params = sample_classic(images.shape, generator, MNIST_REFERENCE)
        for name, way in ways.items():
            started = time.perf_counter()
            way(params)
            seconds[name].append(time.perf_counter() - started)
        affine_params = sample_classic(images.shape, generator, MNIST_AFFINE)
        started = time.perf_counter()
        apply_classic(images, affine_params, MNIST_AFFINE)
        seconds["batched_gmlib_0_1_affine"].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {"batch": batch, "repeats": repeats, "median_seconds_per_batch": medians,
            "speedup_batched_over_per_image": medians["per_image_reference"] / medians["batched_reference"]}


def warm_up(config: EvalConfig, device: torch.device) -> None:
    """One untimed epoch per variant: the first call pays for allocator and kernel setup."""
    generator = torch.Generator().manual_seed(99)
    images, labels = random_images(CLASSES * 4, generator)
    for kwargs in TRAINING_VARIANTS.values():
        evaluate_set(images, labels, images, labels, dataclasses.replace(config, epochs=1), 2, device=device, **kwargs)


def hardware(device: torch.device) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"device": str(device), "cpu": cpu_model(), "cores": cores, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs timed (then extrapolated to the protocol's 1001)")
    parser.add_argument("--models", type=int, default=4, help="models per training measurement")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the ipc 1 training measurement")
    parser.add_argument("--test-images", type=int, default=10_000, help="images in the timed test pass")
    parser.add_argument("--test-repeats", type=int, default=1, help="repeats of the test-pass measurement")
    parser.add_argument("--augment-repeats", type=int, default=5, help="repeats of the augmentation measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/evaluate_<device>.json)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    config = EvalConfig(
        network="convnet",
        network_kwargs={"width": 128, "norm": "instancenorm"},
        epochs=args.epochs,
        augment="dsa",
        dsa_strategy=dsa_strategy_for("mnist"),
    )
    started = time.perf_counter()
    warm_up(config, device)
    training = {
        # ipc 10 costs 10x more per epoch: one run per variant keeps the benchmark within minutes.
        f"ipc{ipc}": time_training(ipc, config, args.models, repeats, device)
        for ipc, repeats in ((1, args.repeats), (10, 1))
    }
    test_pass = time_test_pass(config, args.test_images, args.test_repeats, device)
    classic_augmentation = time_classic_augmentation(256, args.augment_repeats, device)

    test_seconds = {
        name: test_pass["seconds_per_model"]["straightforward" if name == "sequential_whole_batches" else "gmlib"]
        * 10_000 / args.test_images
        for name in TRAINING_VARIANTS
    }
    protocol_epochs = EvalConfig(augment="dsa").num_epochs  # E + 1 = 1001, as the reference trains
    extrapolated = {
        ipc: {
            name: protocol_epochs * measured["train_seconds_per_epoch_per_model"][name] + test_seconds[name]
            for name in TRAINING_VARIANTS
        }
        for ipc, measured in training.items()
    }
    probe = get_network("convnet", CHANNELS, CLASSES, SIZE, width=8)
    report = {
        "benchmark": "gmlib.evaluate: seconds per evaluated model, one-by-one vs batched",
        "command": " ".join(["python", "benchmarks/bench_evaluate.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(device),
        "versions": library_versions(),
        "data": "random tensors shaped like MNIST (1x28x28, 10 classes), NOT real MNIST: timings only",
        "settings": {
            **config.as_dict(),
            "models_per_training_measurement": args.models,
            "ipc1_repeats": args.repeats,
            "ipc10_repeats": 1,
            "test_repeats": args.test_repeats,
        },
        "training": training,
        "test_pass": test_pass,
        "classic_augmentation": classic_augmentation,
        "extrapolated_seconds_per_model_protocol_epochs_plus_10k_test": extrapolated,
        "extrapolation": (
            f"{protocol_epochs} x measured training seconds per epoch + one test pass over 10,000 images "
            "(the straightforward test loop for sequential_whole_batches, gmlib's for the others)"
        ),
        "auto_choice_on_this_device": choose_method(device, probe),
        "caveat": "shared 2-core machine: other jobs may run on the same cores, so single timings can vary by up to 2x",
    }
    report["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"evaluate_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {
        "train_seconds_per_epoch_per_model": {k: v["train_seconds_per_epoch_per_model"] for k, v in training.items()},
        "test_seconds_per_model": test_pass["seconds_per_model"],
        "classic_augmentation_seconds_per_batch_of_256": classic_augmentation["median_seconds_per_batch"],
        "extrapolated_seconds_per_model": extrapolated,
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} in {report['benchmark_seconds']} s")
    return report


if __name__ == "__main__":
    main()
