"""DC's cross-architecture matrix on MNIST at one image per class, next to the published ones.

Rows: the network a synthetic set is distilled with (DC, noise init, same seed for every row;
the MLP at the reference's lr_img 0.01); columns: the network trained on it under the evaluation
protocol (DC's MNIST augmentation; the profile's epochs, width and models unless overridden).
The published matrices are DC's own (seed 004 Table 2, in brackets), seed 002 Table 4 (their
Ours-MD method, not plain DC) and seed 004 Table 3 (a reproduction's LeNet/AlexNet rows).

Writes ``<out>/results.json`` (matrix, per-cell accuracies, configurations, provenance) and
``<out>/README.md`` (the command and the tables). Finished cells are kept under
``<out>/cells`` so that an interrupted run resumes where it stopped.

    python experiments/cross_arch_mnist_ipc1.py --profile cpu --iterations 20 --batch-real 32 \\
        --eval-models 2 --test-size 2000 --out results/cross_arch_mnist_ipc1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from gmlib.book.presets import PROFILE_NAMES, get_profile
from gmlib.book.published import CROSS_ARCH_DC_PAPER, CROSS_ARCH_SEED002_TABLE4, CROSS_ARCH_SEED004_TABLE3, lookup
from gmlib.data import load_dataset
from gmlib.runinfo import describe_hardware, library_versions, resolve_device
from gmlib.studies.crossarch import configs_from_profile, cross_architecture_matrix

DEFAULT_NETWORKS = "mlp,convnet,lenet,alexnet"


def published_cell(table: dict, source: str, target: str) -> str:
    cell = lookup(table, source, target)
    return "-" if cell is None else str(cell)


def readme(command: str, result, profile, matching, evaluation, models: int, seconds: float, hardware: str) -> str:
    head = ["distilled with \\ evaluated on", *result.targets]
    rule = "|" + "---|" * len(head)

    def table(cells) -> list[str]:
        lines = ["| " + " | ".join(head) + " |", rule]
        for i, source in enumerate(result.sources):
            lines.append("| " + " | ".join([source, *[cells(i, j, source, target) for j, target in
                                                    enumerate(result.targets)]]) + " |")
        return lines

    ours = result.percent_table()
    lines = [
        "# Cross-architecture matrix, MNIST, 1 image per class (DC)",
        "",
        "Command:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Distillation: DC, noise init, {matching.iterations} iterations, batch_real {matching.batch_real}, "
        f"ConvNet width {dict(matching.network_kwargs).get('width', '-')}, lr_img 0.1 (MLP 0.01), "
        f"seed {result.provenance['seed']}. "
        f"Evaluation: {models} models per cell, {evaluation.num_epochs} epochs, augmentation '{evaluation.augment}', "
        f"ConvNet width {dict(evaluation.network_kwargs).get('width', '-')}, "
        f"{evaluation.test_size or 'all'} test images. Profile '{profile.name}' with the overrides in the command. "
        f"Hardware: {hardware} (shared with other jobs: times are upper bounds). Distillation and evaluation "
        f"took {seconds / 60:.1f} min in all (summed over resumed calls).",
        "",
        "## Ours (mean ± std over models, %)",
        "",
        *table(lambda i, j, s, t: ours[i][j]),
        "",
        "## Published: DC (Zhao et al. 2021, via seed 004 Table 2 brackets; 1000 iterations, 100 models)",
        "",
        *table(lambda i, j, s, t: published_cell(CROSS_ARCH_DC_PAPER, s, t)),
        "",
        "## Published: seed 002 Table 4 (their Ours-MD method, not plain DC)",
        "",
        *table(lambda i, j, s, t: published_cell(CROSS_ARCH_SEED002_TABLE4, s, t)),
        "",
        "## Published: seed 004 Table 3 (a reproduction with DC's LeNet/AlexNet; its other rows used the originals)",
        "",
        *table(lambda i, j, s, t: published_cell(CROSS_ARCH_SEED004_TABLE3, s, t)),
        "",
        "Distillation seconds per source: "
        + ", ".join(f"{s} {t:.0f}" for s, t in result.distill_seconds.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=("auto", *PROFILE_NAMES), help="compute budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the distillations and evaluations")
    parser.add_argument("--out", default="results/cross_arch_mnist_ipc1", help="output folder")
    parser.add_argument("--networks", default=DEFAULT_NETWORKS, help="comma-separated rows = columns")
    parser.add_argument("--sources", default=None, help="comma-separated rows (default: --networks)")
    parser.add_argument("--targets", default=None, help="comma-separated columns (default: --networks)")
    parser.add_argument("--iterations", type=int, default=None, help="distillation iterations (default: the profile's)")
    parser.add_argument("--batch-real", type=int, default=None, help="real images per class per step")
    parser.add_argument("--eval-models", type=int, default=None, help="evaluation models per cell")
    parser.add_argument("--eval-epochs", type=int, default=None, help="evaluation epochs")
    parser.add_argument("--test-size", type=int, default=None, help="test images (default: the profile's)")
    parser.add_argument("--no-resume", action="store_true", help="discard finished cells in <out>/cells")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("iterations", args.iterations), ("batch_real", args.batch_real),
                                   ("eval_models", args.eval_models), ("eval_epochs", args.eval_epochs),
                                   ("eval_test_size", args.test_size)) if v is not None}
    profile = get_profile(args.profile, **overrides)
    device = resolve_device(profile.device)
    sources = [n for n in (args.sources or args.networks).split(",") if n]
    targets = [n for n in (args.targets or args.networks).split(",") if n]
    out = Path(args.out)
    data = load_dataset("mnist", device=device)
    matching, evaluation, models = configs_from_profile(profile, "mnist", ipc=1)
    started = time.perf_counter()
    result = cross_architecture_matrix(data, sources, targets, matching_config=matching, eval_config=evaluation,
                                       num_models=models, seed=args.seed, device=device,
                                       checkpoint_dir=out / "cells", resume=not args.no_resume, progress=False)
    seconds = time.perf_counter() - started
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    hardware = describe_hardware(device)
    cell_seconds = sum(cell.seconds for cell in result.cells.values())
    payload = result.to_dict() | {
        "command": command, "compute_seconds": cell_seconds + sum(result.distill_seconds.values()),
        "profile": profile.as_dict(), "seed": args.seed, "hardware": hardware,
        "versions": library_versions(), "wall_seconds": seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    (out / "README.md").write_text(readme(command, result, profile, matching, evaluation, models,
                                          payload["compute_seconds"], hardware))
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
