"""Execute the chapters with papermill at a profile, then build the Jupyter Book from them.

    python book/build.py --profile cpu              # execute (cached) + build; prints the HTML path
    python book/build.py --profile ci --execute-only
    python book/build.py --profile ci --reuse       # build from already executed notebooks

Executed notebooks go to build/executed/<profile>/. A notebook is re-executed when its source,
any file of gmlib, a stored run's summary in results/ or the profile changed since its last
execution: the cache key covers the library and the stored runs too, because a chapter's numbers
depend on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
BUILD = ROOT / "build"
BOOK_FILES = ("_config.yml", "_toc.yml", "intro.md", "references.md", "references.bib")


def chapter_notebooks(only: list[str] | None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.stem.startswith(o) for o in only)]
        if not paths:
            sys.exit(f"no chapter matches {only}; chapters: {[p.stem for p in sorted(NOTEBOOKS.glob('[0-9][0-9]_*.ipynb'))]}")
    return paths


def source_key(notebook: Path, profile: str) -> str:
    """Hash of the notebook, the figures' style, every gmlib source file, the stored runs' JSON and
    the profile."""
    digest = hashlib.sha256(profile.encode())
    stored = sorted((ROOT / "results").glob("*/*.json"))
    for path in [notebook, NOTEBOOKS / "matplotlibrc", *sorted((ROOT / "gmlib").rglob("*.py")), *stored]:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def executing_hardware() -> str:
    """This machine, in the words of gmlib.runinfo, recorded with each execution (a later --reuse
    build may run elsewhere)."""
    sys.path.insert(0, str(ROOT))
    from gmlib.runinfo import describe_hardware

    return describe_hardware("cpu")


def execute(notebooks: list[Path], profile: str, force: bool) -> dict[str, dict]:
    """Run each notebook through papermill unless its cached execution is still valid."""
    import papermill

    out_dir = BUILD / "executed" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / "executions.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    for notebook in notebooks:
        target = out_dir / notebook.name
        key = source_key(notebook, profile)
        cached = records.get(notebook.stem, {})
        if not force and target.exists() and cached.get("key") == key:
            print(f"[book] {notebook.stem}: up to date (executed {cached['date']}, {cached['seconds']:.0f} s)")
            continue
        print(f"[book] executing {notebook.stem} at profile {profile} ...", flush=True)
        start = time.perf_counter()
        papermill.execute_notebook(
            str(notebook),
            str(target),
            parameters={"profile": profile},
            kernel_name="python3",
            cwd=str(NOTEBOOKS),
            progress_bar=False,
            request_save_on_cell_execute=False,
        )
        seconds = time.perf_counter() - start
        records[notebook.stem] = {"key": key, "seconds": seconds, "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                                  "hardware": executing_hardware()}
        record_path.write_text(json.dumps(records, indent=2))
        print(f"[book] {notebook.stem}: {seconds:.0f} s", flush=True)
    return records


def build_info_page(profile: str, records: dict[str, dict]) -> str:
    """The 'About this build' page: profile, hardware, versions and chapter runtimes."""
    from gmlib.book.presets import get_profile
    from gmlib.runinfo import describe_hardware, git_commit, library_versions

    prof = get_profile(profile)
    commit, dirty = git_commit()
    source = "unknown (not a git checkout)" if commit is None else f"`{commit}`" + (" with uncommitted changes" if dirty else "")
    rows = "\n".join(
        f"| {stem} | {duration(rec['seconds'])} | {rec['date']} UTC |" for stem, rec in sorted(records.items())
    )
    total = duration(sum(rec["seconds"] for rec in records.values()))
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    fields = "\n".join(f"| `{k}` | `{v}` |" for k, v in prof.as_dict().items())
    return f"""# About this build

This copy of the book was executed at profile **`{profile}`** ({prof.description}).

- Source: git commit {source}
- Hardware: {describe_hardware("cpu")}
- Platform: {platform.platform()}
- Libraries: {versions}

| chapter | execution time | executed |
|---|---|---|
{rows}
| all chapters | {total} | |

## The profile's settings

| field | value |
|---|---|
{fields}
"""


def duration(seconds: float) -> str:
    """'42 s' or '7 min 05 s': how long a chapter took, as the pages print it."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def prepare_page(executed: Path, target: Path, profile: str, record: dict | None) -> None:
    """Copy an executed chapter for the book: hide papermill's injected-parameters cell (the
    provenance lines and the closing line say which profile ran) and end the page with how long
    its execution took, where and when, so each page states its own cost."""
    notebook = json.loads(executed.read_text())
    for cell in notebook["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    if record is not None:
        where = f" on {record['hardware']}" if "hardware" in record else ""  # older records lack it
        line = (f"*This page was executed at profile `{profile}` in {duration(record['seconds'])}"
                f"{where} ({record['date']} UTC); every chapter's time is on "
                "{doc}`../build_info`.*")
        notebook["cells"].append({"cell_type": "markdown", "id": "build-execution-time", "metadata": {},
                                  "source": ["---\n", "\n", line]})
    target.write_text(json.dumps(notebook, indent=1))


def build_book(profile: str, records: dict[str, dict], notebooks: list[Path]) -> Path:
    sys.path.insert(0, str(ROOT))  # the build-info page comes from gmlib.runinfo
    src = BUILD / "book-src" / profile
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy(BOOK / name, src / name)
    shutil.copytree(BOOK / "_ext", src / "_ext")  # the book's own Sphinx extensions
    shutil.copytree(BOOK / "_static", src / "_static")  # its stylesheet
    for notebook in notebooks:
        executed = BUILD / "executed" / profile / notebook.name
        if not executed.exists():
            sys.exit(f"{executed} is missing: run without --reuse to execute it first")
        prepare_page(executed, src / "notebooks" / notebook.name, profile, records.get(notebook.stem))
    (src / "build_info.md").write_text(build_info_page(profile, records))
    out = BUILD / "book" / profile
    jupyter_book = Path(sys.executable).parent / "jupyter-book"  # installed beside this Python
    command = [str(jupyter_book), "build", str(src), "--path-output", str(out), "--warningiserror", "--keep-going", "--quiet"]
    subprocess.run(command, check=True)
    return out / "_build" / "html" / "index.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="ci", choices=["ci", "cpu", "gpu", "paper"],
                        help="compute profile the chapters run at (default ci)")
    parser.add_argument("--only", nargs="*", help="chapter prefixes, e.g. 00 02 (default: all)")
    parser.add_argument("--force", action="store_true", help="re-execute even if the cache is valid")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--execute-only", action="store_true", help="execute notebooks, do not build")
    mode.add_argument("--reuse", action="store_true", help="build from executed notebooks without executing")
    args = parser.parse_args()

    notebooks = chapter_notebooks(args.only)
    record_path = BUILD / "executed" / args.profile / "executions.json"
    if args.reuse:
        records = json.loads(record_path.read_text()) if record_path.exists() else {}
    else:
        records = execute(notebooks, args.profile, args.force)
    if args.execute_only:
        return
    index = build_book(args.profile, records, notebooks)
    print(f"[book] built the {args.profile}-profile book: {index}")


if __name__ == "__main__":
    main()
