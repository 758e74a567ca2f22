"""Command line: ``python -m gmlib data ...`` (more subcommands join as the library grows).

    python -m gmlib data mnist fashion-mnist     # fetch, verify and cache datasets
"""

from __future__ import annotations

import argparse
import sys


def _data(args: argparse.Namespace) -> int:
    from gmlib.data import DataError, load_dataset

    status = 0
    for name in args.names:
        try:
            dataset = load_dataset(name, cache_dir=args.cache_dir)
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {len(dataset.train_labels)} train / {len(dataset.test_labels)} test images, "
              f"{dataset.num_classes} classes, {dataset.channels}x{dataset.im_size[0]}x{dataset.im_size[1]}, checksums verified")
    return status


def build_parser() -> argparse.ArgumentParser:
    from gmlib.data import DATASET_NAMES

    parser = argparse.ArgumentParser(prog="python -m gmlib", description="gmlib: dataset distillation by gradient matching")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="fetch, verify (checksums) and cache datasets",
                               description="Fetch each dataset from its first working source, verify every file "
                                           "against its checksum and cache it (GMLIB_DATA_DIR, default ~/.cache/gmlib).")
    data.add_argument("names", nargs="+", choices=DATASET_NAMES, metavar="NAME",
                      help=f"dataset names, from: {', '.join(DATASET_NAMES)}")
    data.add_argument("--cache-dir", default=None, help="cache directory (default: $GMLIB_DATA_DIR or ~/.cache/gmlib)")
    data.set_defaults(run=_data)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))
