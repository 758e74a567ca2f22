"""Seed 000 (Cartwright), Table 4 at a CPU budget: ConvNet, MLP and LeNet with and without a Hessian term.

Distils MNIST at 1 image per class with seed 000's loop -- noise start, 25 iterations, each a fresh
network and 10 image updates (lr 0.1, momentum 0.5) with NO network training in between (seed
000's published code creates the network optimiser but never steps it) -- through
``gmlib.methods.dc.distill``, in four arms per network:

* ``syn``: DC's layer-wise distance 'ours', no term (seed 000's "Syn" row);
* ``as_coded``: the squared L2 distance 'mse' alone. Seed 000's code switches to this distance when
  the Hessian addition is on and adds ``v^T H v`` computed from *detached* tensors, a constant
  whose gradient w.r.t. the images is zero; so this is its "Syn Hess." row as it ran;
* ``exact``: 'mse' + ``v^T H v`` with the term differentiable (the objective as the text writes it);
* ``gauss_newton``: 'mse' + ``v^T G v`` with the Gauss-Newton matrix (our bounded extension).

Each set is then evaluated like seed 000's "Final" column: a fresh network of the distillation
architecture, Adam, 10 epochs at batch 64 (one step per epoch on 10 images), no augmentation,
tested on the real test set, at the learning rate of the text (0.01) and of the code (0.001),
with ``eval_models`` networks instead of seed 000's one.

    python experiments/seed000_table4.py --profile cpu --seed 0 --out results/seed000_table4

Writes ``<out>/seed000_table4_<profile>[_<networks>].json`` and prints a table next to the
published one. A run whose loss becomes non-finite keeps the set of its last completed iteration;
``diverged_at`` is then the 0-based index of the iteration that failed (None otherwise).
Timings on a shared CPU are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gmlib.book.published import HESSIAN_SEED000
from gmlib.data import load_dataset
from gmlib.methods.dc import distill
from gmlib.methods.dc_config import MatchingConfig
from gmlib.networks import get_network
from gmlib.run.loop import DivergenceError
from gmlib.runinfo import describe_hardware, library_versions
from gmlib.training import test_accuracy

NETWORKS = ("convnet", "mlp", "lenet")
# arm -> (MatchingConfig fields, what it stands for)
ARMS = {
    "syn": (dict(distance="ours", hessian_weight=0.0), "seed 000 'Syn': layer-wise distance, no term"),
    "as_coded": (dict(distance="mse", hessian_weight=0.0),
                 "seed 000 'Syn Hess.' as its code ran: squared L2, the term detached (no gradient)"),
    "exact": (dict(distance="mse", hessian_weight=1.0, hessian_kind="exact"),
              "squared L2 + v^T H v, differentiable (the objective as seed 000's text writes it)"),
    "gauss_newton": (dict(distance="mse", hessian_weight=1.0, hessian_kind="gauss_newton"),
                     "squared L2 + v^T G v, Gauss-Newton (our bounded extension)"),
}
# Seed 000's own settings where the budget allows them; the cpu budget narrows the ConvNet
# (width 32 instead of 128), takes 32 real images per class and step instead of 256, and tests on
# a fixed 5,000-image subset.
BUDGETS = {
    "ci": dict(iterations=1, outer_loop=2, batch_real=8, convnet_width=8, eval_models=2, test_size=500),
    "cpu": dict(iterations=25, outer_loop=10, batch_real=32, convnet_width=32, eval_models=10, test_size=5000),
    "gpu": dict(iterations=25, outer_loop=10, batch_real=256, convnet_width=128, eval_models=10, test_size=None),
}
EVAL_EPOCHS, EVAL_BATCH = 10, 64
EVAL_LRS = {"text": 0.01, "code": 0.001}


def network_kwargs(network: str, budget: dict) -> dict:
    return {"width": budget["convnet_width"]} if network == "convnet" else {}


def seed000_final_accuracy(images, labels, network, kwargs, test_images, test_labels, *, lr, seed) -> float:
    """Seed 000's 'Final' evaluation: a fresh net, Adam(lr), 10 epochs of shuffled batches of 64."""
    generator = torch.Generator().manual_seed(seed)
    net = get_network(network, images.shape[1], 10, tuple(images.shape[2:]), seed=seed, **kwargs)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(EVAL_EPOCHS):
        for batch in torch.randperm(len(images), generator=generator).split(EVAL_BATCH):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(images[batch]), labels[batch]).backward()
            optimizer.step()
    return test_accuracy(net, test_images, test_labels)


def distill_arm(dataset, config: MatchingConfig, seed: int) -> dict:
    """Run ``config`` one iteration at a time (resuming from a checkpoint) so that, if the loss
    becomes non-finite, the last good set survives and the divergence is recorded."""
    result, diverged_at = None, None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        for k in range(1, config.iterations + 1):
            try:
                result = distill(dataset, config, seed=seed, out_dir=checkpoints, stop_at=k, progress=False)
            except DivergenceError as error:
                diverged_at = error.iteration
                break
    history = result.history if result is not None else None
    images, labels = result.synthetic.detached() if result is not None else (None, None)
    return {"images": images, "labels": labels, "seconds": time.perf_counter() - started, "diverged_at": diverged_at,
            "completed": 0 if history is None else history.completed,
            "mean_losses": [] if history is None else history.mean_losses(),
            "curvature": [] if history is None else list(history.extras["curvature"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/seed000_table4"))
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--hessian-loss", choices=("synthetic", "real"), default="synthetic",
                        help="whose Hessian: the synthetic images' loss (cheap) or the real batch's")
    args = parser.parse_args(argv)
    budget = BUDGETS[args.profile]
    started = time.perf_counter()
    dataset = load_dataset("mnist")
    subset = torch.randperm(len(dataset.test_labels), generator=torch.Generator().manual_seed(0))
    subset = subset if budget["test_size"] is None else subset[: budget["test_size"]]
    test_images, test_labels = dataset.test_images[subset], dataset.test_labels[subset]

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if list(args.networks) == list(NETWORKS) else "_" + "_".join(args.networks)
    suffix += "" if list(args.arms) == list(ARMS) else "_" + "_".join(args.arms)
    path = args.out / f"seed000_table4_{args.profile}{suffix}.json"
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    rows: list[dict] = []

    def write(complete: bool) -> None:
        # Written after every arm, so a run cut short still leaves what it finished.
        payload = {
            "command": command, "complete": complete,
            "profile": args.profile, "seed": args.seed, "budget": budget, "hessian_loss": args.hessian_loss,
            "evaluation": {"optimizer": "Adam", "epochs": EVAL_EPOCHS, "batch_size": EVAL_BATCH, "lrs": EVAL_LRS,
                           "models": budget["eval_models"], "test_images": len(test_labels), "augmentation": "none"},
            "hardware": describe_hardware("cpu"), "versions": library_versions(),
            "wall_seconds": time.perf_counter() - started, "published": HESSIAN_SEED000, "rows": rows,
        }
        path.write_text(json.dumps(payload, indent=1))

    for network in args.networks:
        kwargs = network_kwargs(network, budget)
        for arm in args.arms:
            fields, meaning = ARMS[arm]
            config = MatchingConfig(ipc=1, iterations=budget["iterations"], outer_loop=budget["outer_loop"],
                                    inner_loop=0, batch_real=budget["batch_real"], lr_img=0.1, momentum_img=0.5,
                                    init="noise", network=network, network_kwargs=kwargs,
                                    hessian_loss=args.hessian_loss, engine="loop", **fields)
            run = distill_arm(dataset, config, args.seed)
            accuracies = {}
            eval_started = time.perf_counter()
            if run["images"] is not None:
                for name, lr in EVAL_LRS.items():
                    accuracies[name] = [seed000_final_accuracy(run["images"], run["labels"], network, kwargs,
                                                               test_images, test_labels, lr=lr, seed=1000 * args.seed + k)
                                        for k in range(budget["eval_models"])]
            summary = {name: (sum(a) / len(a), math.sqrt(sum((x - sum(a) / len(a)) ** 2 for x in a) / len(a)))
                       for name, a in accuracies.items()}
            pixel_std = None if run["images"] is None else float(run["images"].std())
            rows.append({"network": network, "arm": arm, "meaning": meaning, "config": config.as_dict(),
                         "distill_seconds": run["seconds"], "eval_seconds": time.perf_counter() - eval_started,
                         "diverged_at": run["diverged_at"], "completed_iterations": run["completed"],
                         "mean_losses": run["mean_losses"], "curvature": run["curvature"], "pixel_std": pixel_std,
                         "accuracies": accuracies, "mean_std": summary})
            write(complete=False)
            text = ", ".join(f"{n} {100 * m:.2f} +- {100 * s:.2f}" for n, (m, s) in summary.items())
            print(f"{network:8s} {arm:13s} {text}  (distill {run['seconds']:.0f} s, diverged at {run['diverged_at']}, "
                  f"pixel std {pixel_std})", flush=True)
    write(complete=True)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
