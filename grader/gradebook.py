"""Scores into nbgrader's gradebook, at the end of a run, so that formgrader, `nbgrader export`
and the manual grading of written answers work as before.

Only the autograded test cells are written (auto_score), as nbgrader's own SaveAutoGrades does:
a test that never reported (the notebook stopped before it) gets no score and is marked for a
person. Written answers keep whatever a person entered. The gradebook must already know the
assignment (`nbgrader generate_assignment` records it).
"""
from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.convention import Spec

COURSE_ID_DEFAULT = "transfer-learning-hands-on"


def _course_id(course: Path) -> str:
    """The course id from the course's nbgrader_config.py (nbgrader keys the gradebook by it)."""
    config = Path(course, "nbgrader_config.py")
    if config.exists():
        from traitlets.config.loader import PyFileConfigLoader
        loaded = PyFileConfigLoader(config.name, path=str(config.parent)).load_config()
        course_id = loaded.CourseDirectory.get("course_id")
        if course_id:
            return str(course_id)
    return COURSE_ID_DEFAULT


def write(course: Path, spec: Spec, results: dict[str, dict]) -> str:
    """Write every student's test scores; a one-line note on what was done."""
    db = Path(course, "gradebook.db")
    if not db.exists():
        return "no gradebook.db in the course: scores are only in sandbox_grading/"
    notebook = Path(spec.notebook).stem
    with Gradebook(f"sqlite:///{db}", _course_id(course)) as gb:
        try:
            gb.find_assignment(spec.assignment)
        except MissingEntry:
            return f"the gradebook has no assignment {spec.assignment} (run nbgrader generate_assignment)"
        for student, result in results.items():
            gb.update_or_create_student(student)
            gb.update_or_create_submission(spec.assignment, student)
            scores = {test["grade_id"]: test["points"] for test in result["tests"]}
            for test in spec.tests:
                grade = gb.find_grade(test.grade_id, notebook, spec.assignment, student)
                score = scores.get(test.grade_id)
                ran = result["outcome"] == "graded" or not _never_ran(result, test.grade_id)
                grade.auto_score = score if ran else None
                grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        gb.db.commit()
    return f"scores of {len(results)} students written to gradebook.db"


def _never_ran(result: dict, grade_id: str) -> bool:
    """Whether a test of a stopped notebook never exported a result (so no score is decided)."""
    return any(t["grade_id"] == grade_id and t["message"].startswith("no valid result: no result")
               for t in result["tests"])
