"""Seed 002's ablation at one image per class on MNIST: what (levels) and how (distance) to match.

Variants (all DC otherwise: noise init, 1 outer step and no inner training per iteration at
ipc 1, so seed 002's O and A settings do not apply, as its Table 3 says):

    intra-d1        DC baseline: intra-class gradients, layer-wise cosine d1
    inter           inter-class gradients only (lambda = 10)
    interleaved     intra in even iterations, inter in odd ones
    multi           Ours-M: intra + 10 * inter
    intra-d1+d2     intra-class with the angle-and-magnitude distance d1 + d2
    multi-d1+d2     Ours-MD: multi-level with d1 + d2

Each variant distils from the same seed and is evaluated with the profile's protocol
(ConvNet, DC's MNIST augmentation, the profile's epochs and models, full test set unless the
profile subsets it). Writes ``<out>/results.json`` (with provenance) and prints a table next to
the published numbers (seed 002 Tables 1 and 3).

    python experiments/seed002_ablation.py --profile cpu --iterations 40 --seed 0 --out results/seed002_ablation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from gmlib.book.presets import PROFILE_NAMES, dc_config, get_profile
from gmlib.book.published import ABLATION_SEED002_TABLE3, LEVELS_SEED002_TABLE1
from gmlib.data import load_dataset
from gmlib.methods.dc import distill
from gmlib.runinfo import describe_hardware, library_versions, resolve_device

VARIANTS = {
    "intra-d1": (dict(), "DC baseline", ("T1", "intra")),
    "inter": (dict(match_level="inter"), "inter-class", ("T1", "inter")),
    "interleaved": (dict(match_level="interleaved"), "interleaved", ("T1", "interleaved")),
    "multi": (dict(match_level="multi"), "Ours-M", ("T3", "M")),
    "intra-d1+d2": (dict(distance="d1+d2"), "intra, d1 + d2", None),
    "multi-d1+d2": (dict(match_level="multi", distance="d1+d2"), "Ours-MD", ("T3", "MD")),
}


def published_for(key):
    if key is None:
        return None
    table, column = key
    cell = (LEVELS_SEED002_TABLE1 if table == "T1" else ABLATION_SEED002_TABLE3)["mnist"][1][column]
    return {"mean": cell.mean, "std": cell.std, "source": cell.source}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=("auto", *PROFILE_NAMES), help="compute budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the distillations and evaluations")
    parser.add_argument("--out", default="results/seed002_ablation", help="output folder")
    parser.add_argument("--iterations", type=int, default=None, help="distillation iterations (default: the profile's)")
    parser.add_argument("--eval-models", type=int, default=None, help="evaluation models (default: the profile's)")
    parser.add_argument("--eval-epochs", type=int, default=None, help="evaluation epochs (default: the profile's)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")

    overrides = {k: v for k, v in (("iterations", args.iterations), ("eval_models", args.eval_models),
                                   ("eval_epochs", args.eval_epochs)) if v is not None}
    profile = get_profile(args.profile, **overrides)
    device = resolve_device(profile.device)
    data = load_dataset("mnist", device=device)
    base = dc_config(profile, 1, "mnist", eval_at=(profile.iterations,))
    started = time.perf_counter()
    results = {}
    for name in names:
        options, label, key = VARIANTS[name]
        config = base.replace(**options)
        began = time.perf_counter()
        run = distill(data, config, seed=args.seed, device=device, progress=False)
        evaluation = run.history.evaluations[-1]
        results[name] = {
            "label": label, "options": options, "accuracy_mean": 100 * evaluation.mean,
            "accuracy_std": 100 * evaluation.std, "accuracies": [100 * a for a in evaluation.accuracies],
            "final_loss_per_class": run.history.mean_losses()[-1], "distill_seconds": sum(run.history.seconds),
            "eval_seconds": evaluation.seconds, "wall_seconds": time.perf_counter() - began,
            "published": published_for(key),
        }
        print(f"{name:>12} ({label}): {results[name]['accuracy_mean']:.1f} ± {results[name]['accuracy_std']:.1f} %  "
              f"[{results[name]['wall_seconds']:.0f} s]", flush=True)
    record = {
        "experiment": "seed002_ablation", "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "profile": profile.as_dict(), "seed": args.seed, "ipc": 1, "dataset": "mnist",
        "matching_config": base.as_dict() | {"eval_config": base.eval_config.as_dict()},
        "eval_protocol": {"models": base.eval_models, **base.eval_config.as_dict()},
        "hardware": describe_hardware(device), "versions": library_versions(),
        "wall_seconds": time.perf_counter() - started, "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {out / 'results.json'} ({record['wall_seconds']:.0f} s, {record['hardware']})")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)  # the shared 2-core machine: one thread measured fastest (bench_matching.py)
    raise SystemExit(main())
