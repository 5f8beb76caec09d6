"""Round trips through the real nbgrader commands and the batches they grade, shared by
tests/test_exercises.py, tests/test_grader_assignments.py and benchmarks/bench_grading.py.

A `Course` is a throwaway nbgrader course directory holding a copy of the repository's
nbgrader_config.py and of one assignment's source (solutions/<assignment>/). Every step runs the
same `nbgrader` executable an instructor runs, so the tests grade exactly as the course does.
Plausible wrong answers are declared per assignment in tests/wrong_answers/<assignment>.py as a
list `WRONG_ANSWERS` of `WrongAnswer`s.
"""
from __future__ import annotations

import copy
import csv
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config.loader import PyFileConfigLoader

from grader import convention, warm

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
EXERCISES = REPO / "exercises"
CONFIG = REPO / "nbgrader_config.py"
WRONG_ANSWERS = Path(__file__).resolve().parent / "wrong_answers"
# The venv's bin: `nbgrader` itself, and `alembic`, which nbgrader runs by bare name (so it must be
# on PATH) whenever it creates a gradebook.
BIN = Path(sys.executable).parent
SOLUTION_MARKER = re.compile(r"^[ \t]*### (?:BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
STUDENT_ID = re.compile(r"[a-z][a-z0-9_]*")


def assignments() -> list[str]:
    """Every solutions/ps* folder, so that a new assignment joins the tests by existing."""
    return sorted(p.name for p in SOLUTIONS.glob("ps*") if p.is_dir())


def converted() -> list[str]:
    """The assignments whose instructor notebook is written in the probe/check convention."""
    names = []
    for assignment in assignments():
        try:
            convention.load_assignment(REPO, assignment)
        except convention.NotConverted:
            continue
        names.append(assignment)
    return names


@functools.cache
def warm_problem() -> str:
    """'' when a warm sandbox (grader.warm) starts on this machine, else why not: where it starts,
    every graded submission must have run in one."""
    try:
        warm.ForkServer(("numpy",)).close()
    except warm.Broken as exc:
        return str(exc)
    return ""


def sandboxes_used(results: Mapping[str, dict]) -> set[str]:
    """'warm' or 'cold' for each result that reached a sandbox."""
    return {r["sandbox"].split(":")[0] for r in results.values() if "sandbox" in r}


def load_config():
    """The course's nbgrader configuration, for nbgrader classes used in-process (the Validator)."""
    return PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()


def read_notebooks(folder: Path) -> dict[str, nbformat.NotebookNode]:
    """The notebooks directly inside `folder`, by file name."""
    return {p.name: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def nbgrader_metadata(cell) -> dict:
    """A cell's nbgrader metadata ({} for an ordinary cell)."""
    return cell.metadata.get("nbgrader", {})


# -- what an assignment declares --------------------------------------------------------------

@dataclass(frozen=True)
class GradedCell:
    """A cell that carries points, as the source notebook declares it."""

    notebook: str
    grade_id: str
    points: float
    autograded: bool  # a test cell nbgrader scores; otherwise an answer a person grades


def graded_cells(assignment: str) -> list[GradedCell]:
    """The assignment's cells with points, in notebook order; grade ids must be unique across notebooks,
    so that wrong answers and scores can name a cell by its grade id alone."""
    cells = [
        GradedCell(name, meta["grade_id"], float(meta["points"]), not meta.get("solution", False))
        for name, nb in read_notebooks(SOLUTIONS / assignment).items()
        for meta in map(nbgrader_metadata, nb.cells)
        if meta.get("grade")
    ]
    ids = [cell.grade_id for cell in cells]
    assert len(ids) == len(set(ids)), f"{assignment}: grade ids repeat across notebooks: {ids}"
    return cells


def answer_cells(notebooks: Mapping[str, nbformat.NotebookNode]) -> list[tuple[str, str]]:
    """(notebook, grade id) of the code cells a student writes (nbgrader solution cells), in order."""
    return [
        (name, nbgrader_metadata(cell)["grade_id"])
        for name, nb in notebooks.items()
        for cell in nb.cells
        if cell.cell_type == "code" and nbgrader_metadata(cell).get("solution")
    ]


def solution_answers(notebooks: Mapping[str, nbformat.NotebookNode]) -> dict[str, str]:
    """Every solution cell's source without nbgrader's BEGIN/END SOLUTION lines: what a student
    who gets everything right types into the release."""
    return {
        nbgrader_metadata(cell)["grade_id"]: SOLUTION_MARKER.sub("", cell.source)
        for nb in notebooks.values()
        for cell in nb.cells
        if nbgrader_metadata(cell).get("solution")
    }


def solution_source(assignment: str, grade_id: str) -> str:
    """One solution cell's answer, to declare a wrong answer as a small edit of it."""
    return solution_answers(read_notebooks(SOLUTIONS / assignment))[grade_id]


def swap(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced by `new`; fails if `old` is absent, so that a wrong answer
    cannot silently turn back into the solution when the solution is edited."""
    assert old in source, f"{old!r} is not in the solution any more:\n{source}"
    return source.replace(old, new)


@dataclass(frozen=True)
class WrongAnswer:
    """A plausible mistake, submitted as its own student.

    `replace` maps solution cells (by grade id) to the source the student wrote; every other
    solution cell gets the model answer. `loses` names the autograded test cells that must score 0;
    all other autograded cells must keep full points. An empty `loses` declares a correct answer
    written differently (e.g. one that emits a harmless warning), which must keep every point.
    """

    name: str  # also the student id
    replace: Mapping[str, str]
    loses: frozenset[str] = frozenset()

    def __post_init__(self):
        assert STUDENT_ID.fullmatch(self.name), f"{self.name!r}: use lowercase letters, digits, _"
        object.__setattr__(self, "loses", frozenset(self.loses))


@functools.cache
def _declarations(assignment: str):
    """The module tests/wrong_answers/<assignment>.py, or None if the assignment has none yet."""
    path = WRONG_ANSWERS / f"{assignment}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"wrong_answers_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wrong_answers(assignment: str) -> list[WrongAnswer]:
    """The assignment's declared wrong answers ([] if it declares none)."""
    return list(getattr(_declarations(assignment), "WRONG_ANSWERS", []))


@dataclass(frozen=True)
class Bundle:
    """Wrong answers graded as one submission: each rewrites its own solution cells and must lose
    its own test cells, so together they must lose exactly the union of their `loses`."""

    name: str  # the student id
    members: tuple[WrongAnswer, ...]

    @property
    def replace(self) -> dict[str, str]:
        return {grade_id: src for wrong in self.members for grade_id, src in wrong.replace.items()}

    @property
    def loses(self) -> frozenset[str]:
        return frozenset().union(*(wrong.loses for wrong in self.members))

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(wrong.name for wrong in self.members)})"


def bundles(wrongs: Iterable[WrongAnswer]) -> list[Bundle]:
    """Pack wrong answers into as few submissions as possible, a wrong answer joining a bundle
    only if no member touches the same cells (the solution cells it rewrites, the test cells it
    loses). A mistake in one part then cannot hide or cause a loss in another member's part,
    yet a batch needs about as many submissions as the most-tested part has wrong answers.
    """
    packed: list[list[WrongAnswer]] = []
    touched: list[set[str]] = []
    for wrong in wrongs:
        cells = set(wrong.replace) | wrong.loses
        slot = next((i for i, used in enumerate(touched) if not used & cells), None)
        if slot is None:
            packed.append([])
            touched.append(set())
            slot = len(packed) - 1
        packed[slot].append(wrong)
        touched[slot] |= cells
    return [Bundle(f"wrong_{i + 1:02d}", tuple(members)) for i, members in enumerate(packed)]


def wrong_answer_batch(solution, release, assignment: str, rewrite=lambda source: source) -> dict[str, dict]:
    """Student id -> notebooks: the solution (`perfect`), the release (`blank`) and one submission
    per bundle of the assignment's declared wrong answers, each answer passed through `rewrite`."""
    answers = solution_answers(solution)
    batch = {"perfect": solution, "blank": release}
    for bundle in bundles(wrong_answers(assignment)):
        wrong = {grade_id: rewrite(source) for grade_id, source in bundle.replace.items()}
        batch[bundle.name] = with_answers(release, {**answers, **wrong})
    return batch


# Seconds per cell in the test batch (one place for every assignment). Short, because the
# infinite-loop submission waits it out once per assignment; long enough for the slowest correct
# cell on a busy 2-core machine (make test grades while chapters run beside it), which needs a
# few seconds when idle. The real course grades with nbgrader_config.py's 120 s.
BATCH_CELL_TIMEOUT_S = {
    "default": 20,          # ps1, ps2: small tensors, nothing trained
    "ps3_freezing": 30,     # the setup cell imports torch, tlutils and the handwritten digits
    "ps4_fine_tuning": 60,  # part (c)'s hidden test fine-tunes five times: 8.4 s when idle, and
                            # over 45 s once beside ps9's grading at load 6
    "ps5_evaluation": 30,   # the setup cell imports scikit-learn
    "ps6_debugging": 30,    # as ps3: torch, tlutils and the digits in the setup cell
    "ps7_imagenet": 60,     # part (c)'s hidden test trains and scores four times: 13 s of CPU
                            # time, 21 s on a busy machine (load 5 on 2 cores)
    "ps8_lora": 150,        # part (c)'s hidden test trains LoRA on MiniLM twice and scores 800
                            # reviews: about 70 s of CPU time on 2 cores, more on a busy machine
    "ps9_domain_shift": 60,  # part (d)'s hidden test and the measurement after part (e) each fit
                             # 30 probes over 10 seeds: 7 s of CPU time each, 21 s on a busy
                             # machine (load 8 on 2 cores)
}


# pytest-timeout's limit for one assignment's batch (a module-scoped fixture counts toward the first
# test that uses it): pyproject's 900 s, except where a batch is longer on a busy 2-core machine.
BATCH_TIMEOUT_S = {
    "ps8_lora": 2400,  # every submission fine-tunes MiniLM three times: its sandboxed batch (11
                       # submissions) took 12 minutes in make test beside the other worker's
                       # grading, and its nbgrader batch of 11 took 22
}


def with_batch_timeout(names: Iterable[str]) -> list:
    """Assignment names as fixture params, each marked with its batch's timeout where it has one."""
    return [pytest.param(name, marks=pytest.mark.timeout(BATCH_TIMEOUT_S[name]))
            if name in BATCH_TIMEOUT_S else name for name in names]


def cell_timeout(assignment: str) -> int:
    """The test batch's per-cell timeout for `assignment` (BATCH_CELL_TIMEOUT_S)."""
    return BATCH_CELL_TIMEOUT_S.get(assignment, BATCH_CELL_TIMEOUT_S["default"])


def with_answers(
    notebooks: Mapping[str, nbformat.NotebookNode], answers: Mapping[str, str]
) -> dict[str, nbformat.NotebookNode]:
    """Copies of `notebooks` (a release) with the solution cells named in `answers` rewritten."""
    submission = copy.deepcopy(dict(notebooks))
    unknown = set(answers) - set(solution_answers(notebooks))
    assert not unknown, f"no solution cells with grade ids {sorted(unknown)}"
    for nb in submission.values():
        for cell in nb.cells:
            grade_id = nbgrader_metadata(cell).get("grade_id")
            if nbgrader_metadata(cell).get("solution") and grade_id in answers:
                cell.source = answers[grade_id]
    return submission


# -- a course directory -----------------------------------------------------------------------

class Course:
    """A throwaway nbgrader course directory for one assignment."""

    def __init__(self, root: Path, assignment: str):
        self.root, self.assignment = Path(root), assignment
        self.course_id = load_config().CourseDirectory.course_id
        self.db_url = f"sqlite:///{self.root / 'gradebook.db'}"

    @classmethod
    def create(cls, root: Path, assignment: str) -> Course:
        """A course directory holding copies of the repository's config and the assignment's source."""
        shutil.copy(CONFIG, Path(root) / CONFIG.name)
        shutil.copytree(
            SOLUTIONS / assignment,
            Path(root, "solutions", assignment),
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
        return cls(root, assignment)

    def clone(self, root: Path) -> Course:
        """An independent copy of this directory, gradebook included, to grade a share in parallel."""
        shutil.copytree(self.root, root, dirs_exist_ok=True)
        return Course(root, self.assignment)

    def folder(self, step: str, student: str | None = None) -> Path:
        """The assignment's folder in a step: solutions, exercises, or per student submitted/autograded."""
        parts = [step] if student is None else [step, student]
        return self.root.joinpath(*parts, self.assignment)

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        """Run `nbgrader <args>` in the course directory, as an instructor runs it from the repo root."""
        env = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
        return subprocess.run(
            [str(BIN / "nbgrader"), *args], cwd=self.root, env=env, capture_output=True, text=True
        )

    def generate(self) -> None:
        """Generate the release (the student version) into exercises/<assignment>/."""
        result = self.nbgrader("generate_assignment", self.assignment, "--force")
        assert result.returncode == 0, result.stderr

    def submit(self, student: str, notebooks: Mapping[str, nbformat.NotebookNode]) -> None:
        """Place a submission where `nbgrader collect`/`zip_collect` would: submitted/<student>/<assignment>/."""
        folder = self.folder("submitted", student)
        folder.mkdir(parents=True, exist_ok=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / name)

    def autograde(self, *options: str) -> subprocess.CompletedProcess:
        """Autograde every submission not graded yet. Not checked here: nbgrader exits 1 if any one
        submission failed (after grading all the others), which a test may expect."""
        return self.nbgrader("autograde", self.assignment, *options)

    def scores(self) -> dict[str, dict[str, float | None]]:
        """Auto scores from the gradebook, by student and grade id (None: nbgrader could not
        score the cell, so it waits for a person)."""
        with Gradebook(self.db_url, self.course_id) as gb:
            return {
                submission.student.id: {
                    grade.name: grade.auto_score for nb in submission.notebooks for grade in nb.grades
                }
                for submission in gb.find_assignment(self.assignment).submissions
            }

    def grade_manually(self, student: str, points: Mapping[str, float]) -> None:
        """Enter manual scores by grade id, as an instructor does in formgrader."""
        with Gradebook(self.db_url, self.course_id) as gb:
            for nb in gb.find_submission(self.assignment, student).notebooks:
                for grade in nb.grades:
                    if grade.name in points:
                        grade.manual_score = points[grade.name]
            gb.db.commit()

    def export(self) -> dict[str, dict[str, str]]:
        """Run `nbgrader export` to grades.csv and return its rows by student id."""
        path = self.root / "grades.csv"
        result = self.nbgrader("export", f"--to={path}")
        assert result.returncode == 0, result.stderr
        with open(path, newline="") as f:
            return {row["student_id"]: row for row in csv.DictReader(f)}


def autograde_in_parallel(courses: list[Course], *options: str) -> list[subprocess.CompletedProcess]:
    """Autograde several course directories at once: one nbgrader process each, as a batch is a
    sequential chain of kernels that keeps about one core busy."""
    with ThreadPoolExecutor(len(courses)) as pool:
        return list(pool.map(lambda course: course.autograde(*options), courses))


def outputs(notebooks: Iterable[nbformat.NotebookNode], kinds: set[str]):
    """(grade id or None, output) for every output whose kind ('stderr', 'error', ...) is in `kinds`."""
    for nb in notebooks:
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                kind = output.get("name") if output.output_type == "stream" else output.output_type
                if kind in kinds:
                    yield nbgrader_metadata(cell).get("grade_id"), output
