"""How long grading takes: one submission of each exercise under `nbgrader autograde`, against
the budget; and a batch under `nbgrader autograde` against the sandboxed grader (`python -m grader`).

COURSE.md section 10: at most 120 s per notebook under autograde on 2 CPU cores. For every
assignment in solutions/, a throwaway course directory (tests/grading.py's `Course`, the same
`nbgrader` commands an instructor runs) generates the release, takes the solution as the
submission of student `perfect`, and is autograded once; the table gives the seconds and the
autograded points it scored out of the points nbgrader grades automatically.

`--batch` grades one batch per assignment written in the probe/check convention (the solution, the
blank release and the tests' bundles of declared wrong answers, as tests/test_grader_assignments.py
builds them) twice, side by side on the same cores: `nbgrader autograde` (one submission after
another) and the sandboxed grader (`--workers` dask workers, 2 by default, as on a 2-core
machine). It prints submissions per minute for both, their ratio (issue 13's target: at least 2x)
and what the sandbox costs a submission: the same runner and program (`import torch`) as a plain
process, in a cold sandbox and in a warm one (grader/warm.py).

    python benchmarks/bench_grading.py              # every assignment
    python benchmarks/bench_grading.py ps4_fine_tuning
    python benchmarks/bench_grading.py --batch      # nbgrader against the sandboxed grader
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grader import coordinator, sandbox, warm  # noqa: E402
from grading import (Course, assignments, converted, graded_cells, read_notebooks,  # noqa: E402
                     wrong_answer_batch)

BUDGET_S = 120


def grade_solution(assignment: str) -> tuple[float, float, float, float]:
    """(seconds of one autograde, autograded points scored, autograded points possible, all points)."""
    with tempfile.TemporaryDirectory() as root:
        course = Course.create(Path(root), assignment)
        course.generate()
        course.submit("perfect", read_notebooks(course.folder("solutions")))
        start = time.perf_counter()
        result = course.autograde("--student=perfect")
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"autograde of {assignment} failed:\n{result.stderr[-3000:]}")
        scores = course.scores()["perfect"]
    cells = graded_cells(assignment)
    auto = [cell for cell in cells if cell.autograded]
    return (seconds, sum(scores[cell.grade_id] or 0 for cell in auto), sum(cell.points for cell in auto),
            sum(cell.points for cell in cells))


def submit_batch(course: Course, assignment: str) -> int:
    """The solution, the blank release and every bundle of declared wrong answers, submitted;
    the number of submissions."""
    batch = wrong_answer_batch(read_notebooks(course.folder("solutions")),
                               read_notebooks(course.folder("exercises")), assignment)
    for student, notebooks in batch.items():
        course.submit(student, notebooks)
    return len(batch)


def time_batches(names: list[str], workers: int) -> tuple[int, float, float]:
    """(submissions, seconds under nbgrader autograde, seconds under the sandboxed grader), the
    same batches graded both ways, one assignment after another."""
    count, nbgrader_s, grader_s = 0, 0.0, 0.0
    for assignment in names:
        with tempfile.TemporaryDirectory() as root:
            course = Course.create(Path(root), assignment)
            course.generate()
            n = submit_batch(course, assignment)
            start = time.perf_counter()
            course.autograde()
            nbgrader_s += time.perf_counter() - start
            start = time.perf_counter()
            summary = coordinator.autograde(course.root, assignment, workers=workers, log=lambda line: None)
            grader_s += time.perf_counter() - start
            if not summary.complete:
                raise RuntimeError(f"{assignment}: not every submission was graded: {summary.need_a_person}")
            count += n
            print(f"  {assignment}: {n} submissions, nbgrader {nbgrader_s:.0f} s, grader {grader_s:.0f} s "
                  "(running totals)", flush=True)
    return count, nbgrader_s, grader_s


def sandbox_cost(repeats: int = 5) -> tuple[float, float, float]:
    """Median seconds of one run of the runner on a program that imports torch: as a plain
    process, in a cold sandbox (bubblewrap, then a fresh interpreter) and in a warm one (a child
    forked from a fork server that has imported torch)."""
    program = {"cell_timeout_s": 60, "cells": [{"source": "import torch", "grade_id": None}]}
    boxed = json.dumps({**program, "out_dir": sandbox.OUT}).encode()
    plain, cold, hot = [], [], []
    server = warm.ForkServer(("torch",))
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as bare, tempfile.TemporaryDirectory() as cold_root:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-I", str(sandbox.RUNNER)], cwd=bare, check=True,
                               input=json.dumps({**program, "out_dir": bare}).encode(), stdout=subprocess.DEVNULL)
                plain.append(time.perf_counter() - start)
                sandbox.prepare(Path(cold_root))
                for times, folder, run in ((cold, Path(cold_root), sandbox.run), (hot, server.folder(), server.run)):
                    result = run(folder, boxed, sandbox.Limits())
                    if result.returncode != 0:
                        raise RuntimeError(f"the sandboxed runner failed: {result.output_tail}")
                    times.append(result.seconds)
    finally:
        server.close()
    return statistics.median(plain), statistics.median(cold), statistics.median(hot)


def batch(names: list[str], workers: int) -> None:
    """Print the side-by-side batch figures."""
    print(f"batch: {', '.join(names)}; the sandboxed grader with {workers} workers")
    count, nbgrader_s, grader_s = time_batches(names, workers)
    per_min = (60 * count / nbgrader_s, 60 * count / grader_s)
    print(f"{count} submissions: nbgrader autograde {nbgrader_s:.0f} s ({per_min[0]:.1f}/min), "
          f"sandboxed grader {grader_s:.0f} s ({per_min[1]:.1f}/min): ratio {per_min[1] / per_min[0]:.2f}x "
          "(target at least 2x)")
    plain, cold, hot = sandbox_cost()
    print(f"one submission that imports torch (median of 5): plain process {plain:.2f} s, cold sandbox "
          f"{cold:.2f} s (bubblewrap adds {cold - plain:.2f} s), warm sandbox {hot:.2f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--batch", action="store_true", help="nbgrader against the sandboxed grader")
    parser.add_argument("--workers", type=int, default=2, help="the sandboxed grader's dask workers")
    args = parser.parse_args(argv)
    if args.batch:
        batch(args.assignments or converted(), args.workers)
        return
    args.assignments = args.assignments or assignments()
    print(f"{'assignment':<18} {'seconds':>8} {'budget':>6}  autograded points scored (of all points)")
    for assignment in args.assignments:
        seconds, scored, possible, total = grade_solution(assignment)
        flag = "  OVER BUDGET" if seconds > BUDGET_S else ""
        print(f"{assignment:<18} {seconds:8.1f} {BUDGET_S:6d}  {scored:g} / {possible:g} ({total:g}){flag}")


if __name__ == "__main__":
    main()
