"""How long the book takes: each chapter from a cold kernel, a cold full build, cached rebuilds.

The budgets are those of COURSE.md section 10: a chapter at most 60 s from a cold kernel (on
2 CPU cores), the full cold build well under 10 minutes, a cached rebuild with no change under
30 s. Chapters run with nbclient in a fresh kernel each, from book/ as the book's build runs them.
The builds run in a temporary copy of the repo, so the execution cache starts empty and the
working tree's _build is left alone.

    python benchmarks/bench_book.py                  # chapters and builds
    python benchmarks/bench_book.py --chapters-only  # just the chapters
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
BUILD_FLAGS = ("-W", "-n", "--keep-going")  # as `make book`
CHAPTER_BUDGET_S, COLD_BUILD_BUDGET_S, REBUILD_BUDGET_S = 60, 600, 30
NOT_COPIED = (".git", ".venv", "_build", ".jupyter_cache", "test-artifacts", "__pycache__",
              "*.egg-info", ".ipynb_checkpoints", "gradebook.db")


def time_chapter(path: Path) -> tuple[float, int]:
    """Seconds to run one notebook top to bottom in a new kernel (start-up included), and 1 if
    a cell raised (0 if not)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute(stderr=subprocess.DEVNULL)  # ipykernel 7 logs a transport warning there
    except CellExecutionError:
        return time.perf_counter() - start, 1
    return time.perf_counter() - start, 0


def time_build(root: Path, *args: str) -> tuple[float, int]:
    """Seconds and exit status of one `jupyter-book build` of the book at root."""
    start = time.perf_counter()
    proc = subprocess.run([str(JUPYTER_BOOK), "build", *args, *BUILD_FLAGS, str(root)],
                          cwd=root, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def chapter_rows() -> list[tuple[str, float, int, int]]:
    """(chapter, seconds, budget, status) for every book/0*.ipynb, each in a new kernel."""
    rows = []
    for path in sorted((ROOT / "book").glob("0*.ipynb")):
        seconds, status = time_chapter(path)
        rows.append((path.relative_to(ROOT).as_posix(), seconds, CHAPTER_BUDGET_S, status))
    return rows


def build_rows() -> list[tuple[str, float, int, int]]:
    """(what, seconds, budget, exit status): a cold build of a fresh copy, then two rebuilds."""
    if not (ROOT / "_mathjax").is_dir():
        sys.exit("_mathjax/ is missing: run `make book` once (it copies MathJax) and retry")
    builds = (("cold build (--all, empty execution cache)", ("--all",), COLD_BUILD_BUDGET_S),
              ("rebuild, nothing changed", (), REBUILD_BUDGET_S),
              ("rebuild --all, warm execution cache", ("--all",), REBUILD_BUDGET_S))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        copy = Path(tmp) / "book"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*NOT_COPIED))
        for what, args, budget in builds:
            seconds, status = time_build(copy, *args)
            rows.append((what, seconds, budget, status))
    return rows


def print_table(rows: list[tuple[str, float, int, int]]) -> None:
    """One line per measurement, flagging whatever is over its budget or failed (status != 0)."""
    width = max(len(row[0]) for row in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  {'budget':>6}")
    for what, seconds, budget, status in rows:
        flags = (["OVER BUDGET"] if seconds > budget else []) + ([f"FAILED ({status})"] if status else [])
        print(f"{what:<{width}}  {seconds:8.1f}  {budget:6d}  {' '.join(flags)}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters-only", action="store_true", help="skip the builds")
    args = parser.parse_args()
    rows = chapter_rows()
    if not args.chapters_only:
        rows += build_rows()
    print_table(rows)


if __name__ == "__main__":
    main()
