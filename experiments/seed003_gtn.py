"""Seed 003 (Medvedev & D'yakonov) at a CPU budget: GTN trained by GM and by IFT on MNIST.

Rows like the paper's Tables II-IV: method, accuracy (mean +- std over the evaluation models),
teacher parameter count, peak memory and distillation time, for gradient matching (GM) and
implicit differentiation (IFT), learned input (GTN-lrn) and random input (GTN-rnd), a couple of
generator sizes k, and GM on free pixels (GM + DD) with the same budget as a baseline; the GM
sets are also evaluated on LeNet and the MLP (a corner of Table VI).

    python experiments/seed003_gtn.py --profile cpu --seed 0 --out results/seed003_gtn

Writes ``<out>/seed003_gtn_<profile>.json`` (rows, configs, provenance) and prints a table.
``--gm-iterations`` replaces the profile's GM iterations, ``--methods`` runs some rows only, and
``--keep`` saves each row's set (``<out>/<row slug>/synthetic.pt``, with its provenance), e.g.

    python experiments/seed003_gtn.py --profile cpu --gm-iterations 60 --methods "GM + GTN-lrn (k = 64)" \
        --keep --out results/seed003_gtn_60it
Timings on a shared CPU are upper bounds; memory on a CPU is the process's peak resident set.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from gmlib.book.published import (
    GTN_SEED003_TABLE2,
    GTN_SEED003_TABLE3,
    GTN_SEED003_TABLE4,
    GTN_SEED003_TABLE6,
)
from gmlib.book.stored_runs import row_folder_name
from gmlib.data import load_dataset
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.memory import track_peak_memory
from gmlib.methods.dc import distill
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.gtn import GTNConfig, train_gtn
from gmlib.runinfo import describe_hardware, library_versions, make_provenance
from gmlib.synthetic import save_synthetic

# Budgets: GM takes `outer_loop` teacher updates per iteration, IFT one, so IFT gets more
# iterations (the paper: K = 110 for GM, 1080 for IFT).
BUDGETS = {
    "ci": dict(width=8, batch_real=8, gm_iterations=1, outer_loop=2, gm_inner=2, ift_iterations=2, ift_inner=5,
               terms=2, eval_models=1, eval_epochs=5, eval_width=8, test_size=200, ks=(16,)),
    "cpu": dict(width=32, batch_real=32, gm_iterations=6, outer_loop=5, gm_inner=5, ift_iterations=25, ift_inner=20,
                terms=5, eval_models=3, eval_epochs=100, eval_width=32, test_size=2000, ks=(16, 64)),
}
CROSS_NETWORKS = ("lenet", "mlp")

# Published row for each of ours (method label -> (table, printed method)).
PUBLISHED = {
    "GM + DD": GTN_SEED003_TABLE2[0], "GM + GTN-lrn (k = 64)": GTN_SEED003_TABLE2[2],
    "GM + GTN-lrn (k = 64, not per class)": GTN_SEED003_TABLE2[3], "GM + GTN-lrn (k = 16)": GTN_SEED003_TABLE3[0],
    "GM + GTN-rnd (k = 64)": GTN_SEED003_TABLE3[4], "IFT + GTN-lrn (k = 64)": GTN_SEED003_TABLE4[1],
    "IFT + GTN-rnd (k = 64)": GTN_SEED003_TABLE4[2],
}


def published_text(published: dict | None) -> str:
    return "-" if published is None else f"{published['mean']} ± {published['std']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/seed003_gtn"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gm-iterations", type=int, default=None, help="GM iterations (default: the profile's)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="the rows to run, by label (default all; e.g. 'GM + DD' 'GM + GTN-lrn (k = 64)')")
    parser.add_argument("--keep", action="store_true", help="save each row's set under --out")
    args = parser.parse_args(argv)
    budget = dict(BUDGETS[args.profile])
    if args.gm_iterations is not None:
        budget["gm_iterations"] = args.gm_iterations
    started = time.perf_counter()
    dataset = load_dataset("mnist", device=args.device)
    net_kwargs = {"width": budget["width"]}
    eval_config = EvalConfig(network_kwargs={"width": budget["eval_width"]}, epochs=budget["eval_epochs"],
                             augment="mnist", test_size=budget["test_size"])
    gm = GTNConfig(objective="gm", ipc=10, iterations=budget["gm_iterations"], outer_loop=budget["outer_loop"],
                   inner_steps=budget["gm_inner"], batch_real=budget["batch_real"], network_kwargs=net_kwargs)
    ift = gm.replace(objective="ift", iterations=budget["ift_iterations"], inner_steps=budget["ift_inner"],
                     neumann_terms=budget["terms"])
    big = max(budget["ks"])
    runs = [(f"GM + GTN-lrn (k = {k})", gm.replace(k=k)) for k in budget["ks"]]
    runs += [(f"GM + GTN-lrn (k = {big}, not per class)", gm.replace(k=big, per_class=False)),
             (f"GM + GTN-rnd (k = {big})", gm.replace(k=big, mode="random_input")),
             (f"IFT + GTN-lrn (k = {big})", ift.replace(k=big)),
             (f"IFT + GTN-rnd (k = {big})", ift.replace(k=big, mode="random_input"))]
    wanted = set(args.methods or ["GM + DD", *(label for label, _ in runs)])
    unknown = sorted(wanted - {"GM + DD", *(label for label, _ in runs)})
    if unknown:
        parser.error(f"unknown method(s) {unknown}; the rows of profile {args.profile}: "
                     f"{['GM + DD', *(label for label, _ in runs)]}")
    runs = [(label, config) for label, config in runs if label in wanted]

    def keep(label, synthetic, config, seconds, accuracy):
        """The row's set with its provenance, in <out>/<slug>/synthetic.pt (with --keep)."""
        if not args.keep:
            return None
        slug = row_folder_name(label)
        extra = {"dataset": "mnist", "ipc": 10, "row": label, "config": config.as_dict(), "distill_seconds": seconds,
                 "evaluation": eval_config.as_dict(), "accuracy": accuracy}
        provenance = make_provenance(slug, f"seed003_gtn {args.profile}", args.seed, config.iterations, seconds, extra,
                                     device=args.device)
        save_synthetic(synthetic, args.out / slug / "synthetic.pt", provenance=provenance)
        return slug

    def evaluate(images, labels, network="convnet"):
        config = eval_config if network == "convnet" else EvalConfig(
            network=network, epochs=eval_config.epochs, augment="mnist", test_size=eval_config.test_size)
        result = evaluate_set(images, labels, dataset.test_images, dataset.test_labels, config,
                              budget["eval_models"], seed=args.seed, device=args.device)
        return {"mean": 100 * result.mean, "std": 100 * result.std, "accuracies": [100 * a for a in result.accuracies]}

    rows = []
    # Baseline: gradient matching on free pixels with the same budget (DC's loop, its own lr_img).
    dd_config = MatchingConfig(ipc=10, iterations=gm.iterations, outer_loop=gm.outer_loop, inner_loop=gm.inner_steps,
                               batch_real=gm.batch_real, network_kwargs=net_kwargs)
    if "GM + DD" in wanted:
        with track_peak_memory(args.device) as memory:
            dd = distill(dataset, dd_config, seed=args.seed, device=args.device, progress=False)
        images, labels = dd.synthetic.detached()
        rows.append({"method": "GM + DD", "config": dd_config.as_dict(), "params": images.numel(),
                     "peak_mib": memory.peak_mib, "memory_kind": memory.kind, "distill_seconds": memory.seconds,
                     "accuracy": evaluate(images, labels),
                     "cross": {n: evaluate(images, labels, n) for n in CROSS_NETWORKS}})
        rows[-1]["folder"] = keep("GM + DD", dd.synthetic, dd_config, memory.seconds, rows[-1]["accuracy"])
        print(f"{rows[-1]['method']}: {rows[-1]['accuracy']['mean']:.1f} %", flush=True)
    for label, config in runs:
        result = train_gtn(dataset, config, seed=args.seed, device=args.device, progress=False)
        images, labels = result.synthetic.detached()
        history = result.history
        row = {"method": label, "config": config.as_dict(), "params": result.method.learned_parameters(),
               "parameters": result.method.teacher.parameter_counts(), "peak_mib": history.peak_mib,
               "memory_kind": history.memory_kind, "distill_seconds": sum(history.seconds),
               "losses": [losses[0] for losses in history.losses], "accuracy": evaluate(images, labels)}
        if label == f"GM + GTN-lrn (k = {big})":
            row["cross"] = {n: evaluate(images, labels, n) for n in CROSS_NETWORKS}
        row["folder"] = keep(label, result.synthetic, config, row["distill_seconds"], row["accuracy"])
        rows.append(row)
        print(f"{label}: {row['accuracy']['mean']:.1f} %", flush=True)

    for row in rows:
        published = PUBLISHED.get(row["method"])
        row["published"] = None if published is None else {
            "method": published.method, "mean": published.accuracy.mean, "std": published.accuracy.std,
            "params": published.params, "gpu_mib": published.gpu_mib, "source": published.accuracy.source}
    table6 = {key: {n: {"mean": p.mean, "std": p.std} for n, p in GTN_SEED003_TABLE6[key].items()}
              for key in ("GM+DD", "GM+GTN-lrn")}
    wall = time.perf_counter() - started
    report = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "profile": args.profile, "seed": args.seed, "budget": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in budget.items()},
        "evaluation": eval_config.as_dict(), "hardware": describe_hardware(args.device),
        "versions": library_versions(), "torch_threads": torch.get_num_threads(), "wall_seconds": wall,
        "rows": rows, "published_table6": table6,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"seed003_gtn_{args.profile}.json"
    path.write_text(json.dumps(report, indent=1))
    print("\n| method | ours (%) | published (%) | params ours | params published | peak MiB ours | s |")
    for row in rows:
        p = row["published"]
        print(f"| {row['method']} | {row['accuracy']['mean']:.1f} ± {row['accuracy']['std']:.1f} | "
              f"{published_text(p)} | {row['params']:,} | "
              f"{'-' if p is None else p['params']} | {row['peak_mib']:.0f} | {row['distill_seconds']:.0f} |")
    print(f"wrote {path} in {wall:.0f} s ({report['hardware']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
