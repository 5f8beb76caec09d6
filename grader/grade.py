"""Grading one submission from start to end, as a grading worker does it: the notebook in a
fresh sandbox, then the trusted checks on what it exported, and an outcome with its reason.

Outcomes: `graded` (the notebook ran to its end), `timeout` (stopped at the wall-clock limit),
`limit-exceeded` (memory, CPU time, file size or output), `crashed` (the process ended early:
`os._exit`, a signal), `malformed` (no readable notebook). Whatever the outcome, every test that
exported a result is checked, and the others score 0 with the reason in their message.
"""
from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import nbformat

from grader import checker, convention, sandbox, warm

MAX_SUBMISSION_BYTES = 50 << 20
MAX_NOTES = 10


def _load_notebook(files: dict[str, bytes], name: str):
    """The submitted notebook called `name`; ValueError with a reason if it is not readable."""
    if name not in files:
        raise ValueError(f"no {name} in the submission (found: {', '.join(sorted(files)) or 'nothing'})")
    try:
        nb = nbformat.reads(files[name].decode("utf-8"), as_version=4)
    except Exception as exc:  # noqa: BLE001 (any parse failure is the submission's)
        raise ValueError(f"{name} is not a readable notebook ({type(exc).__name__})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError(f"{name} has no cells")
    return nb


def _log(out: Path) -> tuple[bool, list[str]]:
    """(whether the runner reached the end, notes on cells that ran out of time), from its log;
    the log is the student's process's word, used for notes and never for a score."""
    ended, notes = False, []
    try:
        lines = (out / "log.jsonl").read_text(errors="replace").splitlines()[-10000:]
    except OSError:
        return False, notes
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        ended = ended or entry.get("end") is True
        error = entry.get("error")
        if isinstance(error, str) and error.startswith("CellTimeout"):
            notes.append(f"cell {entry.get('cell')} ran out of time and was interrupted")
    return ended, notes[:MAX_NOTES]


def outcome_of(result: sandbox.Result, limits: sandbox.Limits, ended: bool) -> tuple[str, str]:
    """(outcome, reason) of a sandboxed run."""
    if result.timed_out:
        return "timeout", f"the notebook ran longer than {limits.wall_s:g} s and was stopped"
    if result.disk_exceeded:
        return "limit-exceeded", (f"the results written went over {limits.disk_bytes >> 20} MiB "
                                  f"or {sandbox.MAX_OUT_FILES:,} files")
    if result.memory_exceeded:
        return "limit-exceeded", f"memory went over {limits.memory_bytes >> 20} MiB"
    sig = result.signal
    if sig == signal.SIGXCPU:
        return "limit-exceeded", f"CPU time went over {limits.cpu_s} s"
    if sig == signal.SIGXFSZ:
        return "limit-exceeded", f"a file or the output went over {limits.file_bytes >> 20} MiB"
    if result.output_bytes >= limits.file_bytes:
        return "limit-exceeded", f"the output went over {limits.file_bytes >> 20} MiB and was cut there"
    if result.returncode != 0 or not ended:
        how = (f"signal {signal.Signals(sig).name}" if sig else f"exit status {result.returncode}")
        return "crashed", f"the notebook's process ended before the last cell ({how})"
    return "graded", ""


def grade(spec: convention.Spec, files: dict[str, bytes], limits: sandbox.Limits) -> dict:
    """Grade one submission (`files`: its folder's files by name); a JSON-able result dict."""
    start = time.monotonic()
    base = {"outcome": "malformed", "reason": "", "notes": [], "tests": [], "output_tail": "",
            "sandbox_s": 0.0}
    if sum(map(len, files.values())) > MAX_SUBMISSION_BYTES:
        return {**base, "reason": f"the submission is over {MAX_SUBMISSION_BYTES >> 20} MiB"}
    try:
        nb = _load_notebook(files, spec.notebook)
    except ValueError as exc:
        return {**base, "reason": str(exc)}
    cells, notes = convention.program(spec, nb)
    program = json.dumps({"out_dir": sandbox.OUT, "cell_timeout_s": limits.cell_s, "cells": cells}).encode()
    result, ended, cell_notes, tests, how = _sandboxed(spec, files, program, limits)
    outcome, reason = outcome_of(result, limits, ended)
    return {"outcome": outcome, "reason": reason, "notes": notes + cell_notes,
            "tests": [asdict(t) for t in tests], "output_tail": result.output_tail[-2000:],
            "sandbox": how, "sandbox_s": round(result.seconds, 3), "total_s": round(time.monotonic() - start, 3)}


def _sandboxed(spec: convention.Spec, files: dict[str, bytes], program: bytes, limits: sandbox.Limits):
    """Run the program in this worker's warm sandbox for the assignment, or in a cold one where
    there is none or it broke; (sandbox result, ended, notes, test results, which sandbox)."""
    server = warm.server_for(spec.imports())
    if server is not None:
        try:
            return (*_attempt(server.folder(), server.run, spec, files, program, limits), "warm")
        except warm.Broken as exc:
            how = f"cold: {exc}"
    else:
        how = f"cold: {warm.last_problem()}"
    folder = Path(tempfile.mkdtemp(prefix="tlgrader-"))
    sandbox.prepare(folder)
    return (*_attempt(folder, sandbox.run, spec, files, program, limits), how)


def _attempt(folder: Path, run, spec: convention.Spec, files: dict[str, bytes], program: bytes,
             limits: sandbox.Limits) -> tuple[sandbox.Result, bool, list[str], list]:
    """The submission's files into `folder`/work, `run` it, then check what it exported."""
    try:
        for name, data in files.items():
            if "/" not in name and name not in (".", ".."):
                (folder / "work" / name).write_bytes(data)
                sandbox.give_to_sandbox(folder / "work" / name)
        result = run(folder, program, limits)
        ended, cell_notes = _log(folder / "out")
        return result, ended, cell_notes, checker.check_all(spec, folder / "out")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
