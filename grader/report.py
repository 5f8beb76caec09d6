"""What people read: the run's summary, and each student's feedback page.

Feedback shows each test's points and message and the submission's outcome: never the hidden
tests' code, the probe's data or the references. Every string that came from a submission is
HTML-escaped and capped.
"""
from __future__ import annotations

import html
from pathlib import Path

MAX_TEXT = 500


def summary_text(summary) -> str:
    """Counts by outcome, then the students who need a person, with reasons."""
    counts = summary.counts
    lines = [f"{summary.assignment}: {len(summary.results)} submissions; "
             + ", ".join(f"{outcome} {counts[outcome]}" for outcome in
                         ("graded", "timeout", "crashed", "limit-exceeded", "malformed") if counts[outcome])]
    lines.append(f"graded in this run: {len(summary.graded_now)}, already graded: {len(summary.skipped)}"
                 + (f", redone after an interrupted run: {', '.join(summary.redone)}" if summary.redone else ""))
    people = summary.need_a_person
    if people:
        lines.append("need a person:")
        lines += [f"  {student}: {reason}" for student, reason in people.items()]
    if summary.gradebook_note:
        lines.append(summary.gradebook_note)
    return "\n".join(lines)


def _e(text) -> str:
    return html.escape(str(text)[:MAX_TEXT])


def feedback_html(assignment: str, student: str, result: dict) -> str:
    """One student's feedback page."""
    rows = "\n".join(
        f"<tr><td>{_e(t['grade_id'])}</td><td>{t['points']:g} / {t['max_points']:g}</td>"
        f"<td>{'passed' if t['passed'] else 'failed'}</td><td>{_e(t['message'])}</td></tr>"
        for t in result["tests"])
    total = sum(t["points"] for t in result["tests"])
    possible = sum(t["max_points"] for t in result["tests"])
    notes = "".join(f"<li>{_e(note)}</li>" for note in result.get("notes", []))
    reason = f" ({_e(result['reason'])})" if result.get("reason") else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{_e(assignment)}: {_e(student)}</title></head>
<body>
<h1>{_e(assignment)}: autograded tests</h1>
<p>Outcome: {_e(result['outcome'])}{reason}. Score on the autograded tests: {total:g} / {possible:g}
(written answers are graded by a person).</p>
{f'<ul>{notes}</ul>' if notes else ''}
<table border="1"><tr><th>test</th><th>points</th><th>result</th><th>message</th></tr>
{rows}
</table>
</body></html>
"""


# What nbgrader's release_feedback needs beside a page: copied from the submission, as nbgrader's
# own generate_feedback copies them (written by the student's `nbgrader submit`, so capped).
RELEASE_FILES = ("timestamp.txt", "submission_secret.txt")
MAX_RELEASE_FILE = 1024


def write_feedback(course: Path, assignment: str, notebook: str, results: dict[str, dict],
                   submitted: dict[str, dict[str, bytes]]) -> None:
    """feedback/<student>/<assignment>/<notebook>.html for every student, in nbgrader's layout,
    so that `nbgrader release_feedback` returns these pages (and not the graded notebook, whose
    hidden tests nbgrader's generate_feedback would show)."""
    page = Path(notebook).with_suffix(".html").name
    for student, result in results.items():
        folder = Path(course, "feedback", student, assignment)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / page).write_text(feedback_html(assignment, student, result))
        files = submitted.get(student, {})
        for name in RELEASE_FILES:
            if name in files and len(files[name]) <= MAX_RELEASE_FILE:
                (folder / name).write_bytes(files[name])
