"""How long `nbgrader autograde` takes for one submission of each exercise, against the budget.

COURSE.md section 10: at most 120 s per notebook under autograde on 2 CPU cores. For every
assignment in solutions/, a throwaway course directory (tests/grading.py's `Course`, the same
`nbgrader` commands an instructor runs) generates the release, takes the solution as the
submission of student `perfect`, and is autograded once; the table gives the seconds and the
autograded points it scored out of the points nbgrader grades automatically.

    python benchmarks/bench_grading.py              # every assignment
    python benchmarks/bench_grading.py ps4_fine_tuning
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from grading import Course, assignments, graded_cells, read_notebooks  # noqa: E402

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", default=assignments())
    args = parser.parse_args(argv)
    print(f"{'assignment':<18} {'seconds':>8} {'budget':>6}  autograded points scored (of all points)")
    for assignment in args.assignments:
        seconds, scored, possible, total = grade_solution(assignment)
        flag = "  OVER BUDGET" if seconds > BUDGET_S else ""
        print(f"{assignment:<18} {seconds:8.1f} {BUDGET_S:6d}  {scored:g} / {possible:g} ({total:g}){flag}")


if __name__ == "__main__":
    main()
