"""The coordinator: finds the submissions, decides which jobs to run, sends them to the engine,
and is the only process that writes results (the store, then the gradebook and the feedback
pages, in nbgrader's feedback/ folder).
"""
from __future__ import annotations

import contextlib
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distributed import as_completed

from grader import convention, engine, gradebook, grade, jobs, report, sandbox

OUTCOMES = ("graded", "timeout", "crashed", "limit-exceeded", "malformed")


@dataclass
class Summary:
    """What one `autograde` run did."""

    assignment: str
    results: dict[str, dict] = field(default_factory=dict)   # student -> result (current key)
    graded_now: list[str] = field(default_factory=list)      # students whose job ran in this run
    redone: list[str] = field(default_factory=list)          # ... of which an earlier run was cut off
    skipped: list[str] = field(default_factory=list)         # finished earlier, same key
    gradebook_note: str = ""

    @property
    def counts(self) -> Counter:
        return Counter(result["outcome"] for result in self.results.values())

    @property
    def need_a_person(self) -> dict[str, str]:
        """Students whose submission did not simply run to its end, with the reasons."""
        return {student: "; ".join(filter(None, [f"{r['outcome']}: {r['reason']}" if r["outcome"] != "graded"
                                                 else "", *r.get("notes", [])]))
                for student, r in sorted(self.results.items())
                if r["outcome"] != "graded" or r.get("notes")}

    @property
    def complete(self) -> bool:
        return all(result["outcome"] in OUTCOMES for result in self.results.values())


def submissions(course: Path, assignment: str) -> dict[str, dict[str, bytes]]:
    """Student id -> the files of submitted/<student>/<assignment>/ (nbgrader's layout)."""
    found = {}
    for folder in sorted(Path(course, "submitted").glob(f"*/{assignment}")):
        if folder.is_dir():
            found[folder.parent.name] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())
                                         if p.is_file() and not p.is_symlink()}
    return found


def results_path(course: Path, assignment: str) -> Path:
    return Path(course, "sandbox_grading", assignment, "results.sqlite")


def autograde(course: Path, assignment: str, workers: int | None = None, scheduler: str | None = None,
              limits: sandbox.Limits = sandbox.Limits(), log=print) -> Summary:
    """Grade every submission of `assignment` that has no outcome for its current key."""
    course = Path(course).resolve()
    sandbox.bwrap_path()  # fail early, with the fix, when bubblewrap is missing
    spec = convention.load_assignment(course, assignment)
    tests_sha = spec.digest()
    store = jobs.Store(results_path(course, assignment))
    summary = Summary(assignment)
    todo: dict[str, tuple[jobs.Key, dict]] = {}
    try:
        found = submissions(course, assignment)
        for student, files in found.items():
            key = jobs.Key(assignment, student, jobs.submission_digest(files), tests_sha)
            done = store.result(key)
            if done is not None:
                summary.results[student] = done
                summary.skipped.append(student)
                continue
            if store.was_interrupted(key):
                summary.redone.append(student)
            todo[student] = (key, files)
        log(f"{assignment}: {len(todo)} to grade, {len(summary.skipped)} already graded"
            + (f", {len(summary.redone)} redone after an interrupted run" if summary.redone else ""))
        if todo:
            _run(store, spec, todo, workers, scheduler, limits, summary, log)
        summary.gradebook_note = gradebook.write(course, spec, summary.results)
        report.write_feedback(course, assignment, spec.notebook, summary.results, found)
    finally:
        store.close()
    return summary


def _run(store, spec, todo, workers, scheduler, limits, summary, log) -> None:
    """Send the jobs to the engine; record each outcome as it arrives."""
    with engine.client(workers, scheduler) as client:
        log(f"engine: dask scheduler {client.scheduler.address}, "
            f"{len(client.scheduler_info()['workers'])} workers")
        spec_future = client.scatter(spec, broadcast=True)
        futures = {}
        for student, (key, files) in todo.items():
            store.start(key)  # committed before the job leaves: a crash from here on is visible
            future = client.submit(grade.grade, spec_future, files, limits, pure=False,
                                   key=f"grade-{spec.assignment}-{student}-{key.submission_sha[:12]}")
            futures[future] = student
        for future in as_completed(futures):
            student = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 (a worker that died twice: an outcome too)
                result = {"outcome": "crashed", "reason": f"the grading worker failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]})", "notes": [], "tests": [], "output_tail": "",
                          "worker_error": traceback.format_exc()[-2000:]}
            store.finish(todo[student][0], result)
            summary.results[student] = result
            summary.graded_now.append(student)
            score = sum(t["points"] for t in result["tests"])
            log(f"  {student}: {result['outcome']}, {score:g} / {spec.max_score:g}"
                + (f" ({result['reason']})" if result["reason"] else ""))
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
