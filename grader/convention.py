"""The authoring convention: a hidden test split into what runs with the student's code and what
decides the grade.

In the instructor notebook (solutions/<assignment>/<assignment>.ipynb) every autograded test cell
of a converted assignment holds one nbgrader hidden-test block in three parts:

    ### BEGIN HIDDEN TESTS
    <shared: builds the hidden inputs; never calls the student's code>       (optional)
    ### PROBE
    <probe: calls the student's code, keeps plain data in a dict `probe`>
    ### CHECK
    <check: asserts on `probe`, against references it computes itself>
    ### END HIDDEN TESTS

nbgrader runs the block as it stands (shared, probe, check in the student's kernel), so
`nbgrader autograde` and the Validate button keep working. `python -m grader` runs shared + probe
in the sandbox, right after the cell's visible code, and exports `probe`; it runs shared + check
in a trusted process, on the exported data only, in a namespace holding what the notebook's setup
cells define (its locked code cells before the first answer cell). The student's process never
sees the check part nor its references. A visible test cell carries such a block too (repeating
its visible checks): its grade is decided by the check, never by code in the student's process.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n(.*?)^[ \t]*### END HIDDEN TESTS[ \t]*(?:\n|\Z)",
                    re.MULTILINE | re.DOTALL)
PROBE = re.compile(r"^[ \t]*### PROBE[ \t]*\n", re.MULTILINE)
CHECK = re.compile(r"^[ \t]*### CHECK[ \t]*\n", re.MULTILINE)
GRADE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# what a sandboxed run of this convention means; part of the tests' hash
VERSION = "probe-check/1"


class NotConverted(ValueError):
    """The assignment's tests are not (all) written in the probe/check convention."""


@dataclass(frozen=True)
class Test:
    """One autograded test cell, split."""

    grade_id: str
    points: float
    visible: str  # the cell as released (no hidden block): run in the sandbox, decides nothing
    shared: str
    probe: str
    check: str


@dataclass(frozen=True)
class Spec:
    """What the grader needs from one instructor notebook."""

    assignment: str
    notebook: str                  # file name, e.g. ps1_concepts.ipynb
    setup: tuple[str, ...]         # the locked code cells before the first answer cell
    locked: dict                   # grade id -> released source of every locked code cell
    tests: tuple[Test, ...]

    def digest(self) -> str:
        """sha256 of everything that decides a grade: a change regrades every submission."""
        data = json.dumps([VERSION, asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()

    @property
    def max_score(self) -> float:
        return sum(test.points for test in self.tests)

    def imports(self) -> tuple[str, ...]:
        """The modules that the instructor's code run in the sandbox imports (the setup cells,
        the tests' visible, shared and probe parts), in order: what a warm sandbox preloads."""
        sources = [*self.setup, *(part for t in self.tests for part in (t.visible, t.shared, t.probe))]
        found: dict[str, None] = {}
        for source in sources:
            try:
                tree = ast.parse(source)
            except SyntaxError:  # IPython magics: the notebook imports what it needs anyway
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(dict.fromkeys(alias.name for alias in node.names))
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found[node.module] = None
        return tuple(found)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def split(source: str, grade_id: str) -> tuple[str, str, str, str]:
    """(visible, shared, probe, check) of a test cell's source; NotConverted if it has no
    hidden block with a `### CHECK` line."""
    blocks = HIDDEN.findall(source)
    if len(blocks) != 1 or not CHECK.search(blocks[0]):
        raise NotConverted(f"{grade_id}: no hidden-test block with ### PROBE / ### CHECK parts")
    before, check = CHECK.split(blocks[0], maxsplit=1)
    parts = PROBE.split(before, maxsplit=1)
    shared, probe = parts if len(parts) == 2 else ("", parts[0])
    return HIDDEN.sub("", source).rstrip("\n"), shared, probe, check


def load(path: Path, assignment: str) -> Spec:
    """The Spec of the instructor notebook at `path`."""
    nb = nbformat.read(path, as_version=4)
    setup, locked, tests, problems = [], {}, [], []
    seen_answer = False
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        grade_id = meta.get("grade_id")
        if meta.get("solution"):
            seen_answer = True
            continue
        if meta.get("locked") and grade_id:
            if not GRADE_ID.fullmatch(grade_id):
                raise NotConverted(f"grade id {grade_id!r}: use letters, digits, _ and -")
            locked[grade_id] = HIDDEN.sub("", cell.source).rstrip("\n")
            if not seen_answer and not meta.get("grade"):
                setup.append(cell.source)
        if meta.get("grade"):
            try:
                visible, shared, probe, check = split(cell.source, grade_id)
            except NotConverted as exc:
                problems.append(str(exc))
                continue
            tests.append(Test(grade_id, float(meta["points"]), visible, shared, probe, check))
    if problems:
        raise NotConverted(f"{assignment} is not converted to probe/check: " + "; ".join(problems))
    if not tests:
        raise NotConverted(f"{assignment}: no autograded test cells")
    return Spec(assignment, path.name, tuple(setup), locked, tuple(tests))


def load_assignment(course: Path, assignment: str) -> Spec:
    """The Spec of solutions/<assignment>/: one notebook per assignment in this slice."""
    notebooks = sorted((Path(course) / "solutions" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise NotConverted(f"{assignment}: expected one notebook in solutions/{assignment}, "
                           f"found {len(notebooks)}")
    return load(notebooks[0], assignment)


def program(spec: Spec, submitted: nbformat.NotebookNode) -> tuple[list[dict], list[str]]:
    """The cells the sandbox runs for a submitted notebook, and notes for a person.

    The student's cells run in their order; a locked cell runs as the instructor released it,
    whatever the student did to it (as nbgrader does); each test's probe runs right after its
    cell. A test cell the student deleted has its probe run at the end; a duplicated one, once.
    """
    tests = {test.grade_id: test for test in spec.tests}
    cells, notes, probed = [], [], set()
    for cell in submitted.cells:
        if cell.get("cell_type") != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        source = spec.locked.get(grade_id, cell.get("source", ""))
        entry = {"source": source, "grade_id": grade_id}
        if grade_id in tests and grade_id not in probed:
            test = tests[grade_id]
            entry.update(shared=test.shared, probe=test.probe)
            probed.add(grade_id)
        elif grade_id in tests:
            notes.append(f"test cell {grade_id} appears more than once; its test ran once")
        cells.append(entry)
    for grade_id, test in tests.items():
        if grade_id not in probed:
            notes.append(f"test cell {grade_id} was missing from the notebook; its test ran at the end")
            cells.append({"source": test.visible, "grade_id": grade_id,
                          "shared": test.shared, "probe": test.probe})
    return cells, notes
