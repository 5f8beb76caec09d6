"""Every nbgrader assignment round-trips through the real nbgrader commands and grades as intended.

Per assignment (each solutions/ps* folder) one throwaway course directory is generated and
autograded once, as one batch with a short per-cell timeout (`grading.BATCH_CELL_TIMEOUT_S`), and
every test below reads from it. The batch holds the solution (student `perfect`) and the untouched
release (`blank`): the solution scores full marks, the release zero, and the export adds up.
The declared wrong answers (tests/wrong_answers/<assignment>.py) are graded once, by the grader
instructors are told to trust, in tests/test_grader_assignments.py: every assignment must be
written in its probe/check convention, whose hidden blocks nbgrader runs unchanged in the
student's kernel, so that a wrong answer's grade is decided by the same check code either way.
benchmarks/bench_grading.py times the solution alone, with the course's real configuration,
against the 120 s budget.

What does not depend on an assignment's content, but on nbgrader_config.py, is checked on one
assignment, the quickest to grade (GRADER_CHECKS_ON): that three submissions misbehaving in their
last answer cell (an infinite loop, a sys.exit, a killed kernel), graded first, do not stop the rest
of the batch, and that the Validate button passes the solution and fails the release.

A batch is dealt out to copies of the course directory, graded at the same time, as many as there
are cores per pytest process (one under `make test`, whose two processes keep both cores busy).
To add an assignment: add solutions/psN/, generate exercises/psN/ and declare its wrong answers.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from subprocess import CompletedProcess

import nbformat
import pytest
from nbgrader.validator import Validator

from grading import (
    EXERCISES, SOLUTIONS, Course, GradedCell, answer_cells, assignments, autograde_in_parallel,
    cell_timeout, graded_cells, load_config, outputs, read_notebooks, solution_answers,
    with_answers, with_batch_timeout,
)

pytestmark = pytest.mark.slow

GRADER_CHECKS_ON = "ps2_loss"
# course directories graded at once: the cores this pytest process has to itself
PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
SHARES = max(1, min(4, len(os.sched_getaffinity(0)) // PROCESSES))
FAILED_STUDENT = re.compile(r"There was an error processing assignment '[^']*' for student '([^']*)'")
# Student ids starting with "0" sort before the others, and nbgrader grades in sorted order.
# Each replaces the last answer cell. Graded only in GRADER_CHECKS_ON's batch.
MISBEHAVING = {
    # never returns, so it times out and the kernel is interrupted; it sleeps rather than spins,
    # so that waiting out the timeout costs the other tests no CPU
    "0_infinite_loop": "import time\nwhile True:\n    time.sleep(0.1)\n",
    "0_sys_exit": "import sys\nsys.exit(1)\n",  # an error like any other
    "0_kernel_death": "import os\nos._exit(1)\n",  # the kernel process dies
}


@dataclass
class Graded:
    """One assignment's course directory after its batch was autograded, and what that produced."""

    course: Course
    cells: list[GradedCell]
    batch_runs: list[CompletedProcess]
    scores: dict[str, dict[str, float | None]]
    graded_in: dict[str, Course]  # student id -> the course directory that graded it

    @property
    def autograded(self) -> dict[str, float]:
        """Points of every autograded test cell, by grade id."""
        return {cell.grade_id: cell.points for cell in self.cells if cell.autograded}

    def auto_scores(self, student: str) -> dict[str, float | None]:
        """The student's scores on the autograded test cells."""
        return {grade_id: self.scores[student].get(grade_id) for grade_id in self.autograded}

    def autograded_notebooks(self, student: str) -> list[nbformat.NotebookNode]:
        """The student's notebooks as autograde left them, outputs included."""
        return list(read_notebooks(self.graded_in[student].folder("autograded", student)).values())

    @property
    def failed(self) -> set[str]:
        """The students nbgrader reported it could not process (it grades the others first)."""
        return {student for run in self.batch_runs for student in FAILED_STUDENT.findall(run.stderr)}


@pytest.fixture(scope="module", params=with_batch_timeout(assignments()))
def course(request, tmp_path_factory) -> Course:
    """A course directory with the assignment's release freshly generated."""
    course = Course.create(tmp_path_factory.mktemp(request.param), request.param)
    course.generate()
    return course


def batch_submissions(solution, release, assignment) -> dict[str, dict]:
    """Student id -> notebooks for the batch: the solution, the release and the misbehaving
    (GRADER_CHECKS_ON only)."""
    answers = solution_answers(solution)
    _, last = answer_cells(solution)[-1]
    batch = {"perfect": solution, "blank": release}
    if assignment == GRADER_CHECKS_ON:
        for student, code in MISBEHAVING.items():
            batch[student] = with_answers(release, {**answers, last: code})
    return batch


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory) -> Graded:
    """The batch, autograded (see the module docstring); `course` grades perfect and blank."""
    shares = [course] + [course.clone(tmp_path_factory.mktemp(course.assignment)) for _ in range(SHARES - 1)]
    batch = batch_submissions(read_notebooks(course.folder("solutions")),
                              read_notebooks(course.folder("exercises")), course.assignment)
    # perfect and blank stay in `course`, which test_export_totals exports
    graded_in = {student: shares[0] if student in ("perfect", "blank") else shares[i % SHARES]
                 for i, student in enumerate(batch)}
    for student, notebooks in batch.items():
        graded_in[student].submit(student, notebooks)
    runs = autograde_in_parallel(shares, f"--Execute.timeout={cell_timeout(course.assignment)}")
    scores = {student: grades for share in shares for student, grades in share.scores().items()}
    return Graded(course, graded_cells(course.assignment), runs, scores, graded_in)


def test_solution_scores_full_marks(graded):
    assert "perfect" not in graded.failed, "\n".join(run.stderr for run in graded.batch_runs)
    assert graded.auto_scores("perfect") == graded.autograded


def test_untouched_release_scores_zero(graded):
    assert graded.auto_scores("blank") == dict.fromkeys(graded.autograded, 0.0)


@pytest.mark.parametrize("course", [GRADER_CHECKS_ON], indirect=True)
def test_validator_passes_solution_and_fails_release(course):
    # `nbgrader validate` exits 0 even when validation fails, so ask the Validator itself.
    validator = Validator(config=load_config())
    for name in read_notebooks(course.folder("solutions")):
        assert validator.validate(str(course.folder("solutions") / name)) == {}, name
    for name in read_notebooks(course.folder("exercises")):
        assert validator.validate(str(course.folder("exercises") / name)).get("failed"), name


def test_export_totals(graded):
    manual = {cell.grade_id: cell.points for cell in graded.cells if not cell.autograded}
    graded.course.grade_manually("perfect", manual)  # as an instructor would in formgrader
    rows = graded.course.export()
    total = sum(cell.points for cell in graded.cells)
    assert float(rows["perfect"]["max_score"]) == total
    assert float(rows["perfect"]["score"]) == total
    assert float(rows["blank"]["score"]) == 0.0


def test_solution_writes_nothing_to_stderr_and_raises_nothing(graded):
    autograded = graded.autograded_notebooks("perfect")
    graded_ids = {cell.grade_id for cell in graded.cells}
    stderr = [g for g, _ in outputs(autograded, {"stderr"}) if g in graded_ids]
    assert not stderr, f"stderr output in graded cells {stderr}"
    errors = [(g, out.ename) for g, out in outputs(autograded, {"error"})]
    assert not errors, f"errors in the solution: {errors}"


@pytest.mark.parametrize("course", [GRADER_CHECKS_ON], indirect=True)
def test_loop_and_crashes_do_not_stop_the_batch(graded):
    for student in ("0_infinite_loop", "0_sys_exit"):
        scores = graded.auto_scores(student)
        assert None not in scores.values(), f"{student} was not graded: {scores}"
        assert sum(scores.values()) < sum(graded.autograded.values()), (student, scores)
        for nb in graded.autograded_notebooks(student):  # the kernel survived to the last cell
            assert [c for c in nb.cells if c.cell_type == "code"][-1].execution_count, student
    loop_errors = outputs(graded.autograded_notebooks("0_infinite_loop"), {"error"})
    assert "CellTimeoutError" in {out.ename for _, out in loop_errors}
    # A dead kernel fails its notebook: nothing in it is scored, it waits for a person, and
    # nbgrader exits 1 naming the student, after grading everyone else.
    killed, _ = answer_cells(read_notebooks(graded.course.folder("solutions")))[-1]
    killed_cells = [cell.grade_id for cell in graded.cells if cell.notebook == killed]
    assert {graded.scores["0_kernel_death"][g] for g in killed_cells} == {None}
    assert graded.failed == {"0_kernel_death"}
    assert [run.returncode for run in graded.batch_runs].count(1) == 1
    assert all(None not in graded.auto_scores(student).values() for student in ("blank", "perfect"))


def comparable(nb: nbformat.NotebookNode) -> dict:
    """What generate_assignment decides in a notebook, without metadata an editor adds on save."""
    return {
        "kernelspec": nb.metadata.get("kernelspec"),
        "cells": [
            (cell.cell_type, cell.source, cell.metadata.get("nbgrader"), cell.metadata.get("tags"),
             cell.get("outputs"))
            for cell in nb.cells
        ],
    }


def relative_files(folder):
    """The files under `folder`, relative to it, without JupyterLab's checkpoints."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and ".ipynb_checkpoints" not in p.parts)


def test_committed_release_is_current(course):
    fresh, committed = course.folder("exercises"), EXERCISES / course.assignment
    hint = f"regenerate: nbgrader generate_assignment {course.assignment} --force, then commit"
    assert relative_files(fresh) == relative_files(committed), hint
    for path in relative_files(fresh):
        if path.suffix == ".ipynb":
            old, new = (nbformat.read(f / path, as_version=4) for f in (committed, fresh))
            assert comparable(old) == comparable(new), f"exercises/{course.assignment}/{path}: {hint}"
        else:
            assert (committed / path).read_bytes() == (fresh / path).read_bytes(), hint


@pytest.mark.parametrize("assignment", assignments())
def test_points_are_mostly_autograded(assignment):
    cells = graded_cells(assignment)
    autograded = sum(cell.points for cell in cells if cell.autograded)
    assert autograded >= 0.8 * sum(cell.points for cell in cells)
    assert sum(cell.autograded for cell in cells) >= 3
    assert len(answer_cells(read_notebooks(SOLUTIONS / assignment))) >= 3
