"""Do the book's claims hold for other seeds? Re-run every chapter on disjoint seed sets.

Every chapter takes its seeds from `tlutils.seeds(n)`, which reads `TLUTILS_SEED_SET`: set 0 is
the default the book is built with (seeds 0, 1, ...), set j >= 1 the seeds 1000 j, 1000 j + 1, ...
This script executes each chapter in a fresh kernel once per seed set, lets every cell run even
after one fails, and prints, per chapter and set, the assertion cells (tagged `remove-cell`)
that failed, with the assertion's message. A claim is only a claim if it holds on every set.

    python benchmarks/claims.py                   # every chapter, seed sets 1 2 3
    python benchmarks/claims.py --sets 0 1 2 3 --chapters book/02_loss.ipynb
    python benchmarks/claims.py --jobs 2          # two kernels at a time

It is a benchmark (minutes per set), not part of `make test`, which runs seed set 0.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tlutils.train import SEED_SET_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Run:
    """One chapter executed on one seed set: the cells that failed, and how long it took."""

    chapter: str
    seed_set: int
    failures: tuple[tuple[str, str], ...]   # (cell id, last line of the error)
    seconds: float


def failed_cells(notebook) -> list[tuple[str, str]]:
    """(cell id, error) for each cell that raised, except cells tagged `raises-exception`."""
    failures = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for out in cell.outputs:
            if out.output_type == "error":
                message = f"{out.ename}: {out.evalue}".strip().splitlines()
                failures.append((cell.get("id", "?"), (message or ["?"])[0][:160]))
    return failures


def run_chapter(path: Path, seed_set: int) -> Run:
    """Execute `path` top to bottom in a kernel that sees `TLUTILS_SEED_SET=seed_set`; every
    cell runs, also after one fails."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            allow_errors=True, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env={**os.environ, SEED_SET_VARIABLE: str(seed_set)}, stderr=subprocess.DEVNULL)
    return Run(path.relative_to(ROOT).as_posix(), seed_set, tuple(failed_cells(notebook)),
               time.perf_counter() - start)


def print_table(runs: list[Run], sets: list[int]) -> None:
    """One row per chapter: "ok" or the failing cells, per seed set; then every failure's message."""
    chapters = sorted({run.chapter for run in runs})
    by_key = {(run.chapter, run.seed_set): run for run in runs}
    width = max(len(c) for c in chapters)
    print(f"{'chapter':<{width}}  " + "  ".join(f"{'set ' + str(s):<14}" for s in sets))
    for chapter in chapters:
        cells = []
        for s in sets:
            run = by_key[chapter, s]
            cells.append("ok" if not run.failures else ",".join(cid for cid, _ in run.failures))
        print(f"{chapter:<{width}}  " + "  ".join(f"{c:<14}" for c in cells))
    failures = [(run, cid, msg) for run in runs for cid, msg in run.failures]
    if failures:
        print("\nfailures:")
        for run, cid, msg in failures:
            print(f"  {run.chapter} set {run.seed_set} cell {cid}: {msg}")
    held = sum(not run.failures for run in runs)
    print(f"\n{held} of {len(runs)} chapter runs hold every claim; "
          f"{sum(run.seconds for run in runs):.0f} s of chapter time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--chapters", nargs="+", type=Path,
                        default=sorted((ROOT / "book").glob("0*.ipynb")))
    parser.add_argument("--jobs", type=int, default=1, help="kernels at a time")
    args = parser.parse_args()
    jobs = [(path.resolve(), s) for s in args.sets for path in args.chapters]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: run_chapter(*job), jobs))
    print_table(runs, args.sets)


if __name__ == "__main__":
    main()
