"""The results store: one SQLite file per assignment, written by the coordinator alone.

A job is keyed by (assignment, student, sha256 of the submission, sha256 of the tests). A job is
marked `running` (committed) before it is sent to a worker and gets its outcome (committed) when
its result comes back. So after a crash or `kill -9` of the coordinator, a rerun finds:
  - jobs with an outcome for the current key: skipped (finished, same submission, same tests);
  - jobs still `running`: redone (nothing is silently skipped);
  - a student whose submission or the tests changed: a new key, so graded again.
Old keys stay as history; `current` answers only for the keys of the present submissions.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    assignment TEXT NOT NULL, student TEXT NOT NULL,
    submission_sha TEXT NOT NULL, tests_sha TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    outcome TEXT, reason TEXT, result TEXT, updated REAL NOT NULL,
    PRIMARY KEY (assignment, student, submission_sha, tests_sha)
)
"""


@dataclass(frozen=True)
class Key:
    assignment: str
    student: str
    submission_sha: str
    tests_sha: str


def submission_digest(files: dict[str, bytes]) -> str:
    """sha256 over a submission's file names and contents."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


class Store:
    """The results of one assignment's jobs."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def result(self, key: Key) -> dict | None:
        """The finished result for exactly this key, or None (never graded, or interrupted)."""
        row = self.db.execute(
            "SELECT result FROM jobs WHERE assignment=? AND student=? AND submission_sha=? "
            "AND tests_sha=? AND state='done'", _values(key)).fetchone()
        return None if row is None else json.loads(row[0])

    def was_interrupted(self, key: Key) -> bool:
        """Whether this exact job was started by an earlier run that never recorded its outcome."""
        row = self.db.execute(
            "SELECT state FROM jobs WHERE assignment=? AND student=? AND submission_sha=? "
            "AND tests_sha=?", _values(key)).fetchone()
        return row is not None and row[0] == "running"

    def start(self, key: Key) -> None:
        self.db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, 'running', NULL, NULL, NULL, ?) "
            "ON CONFLICT DO UPDATE SET state='running', updated=excluded.updated",
            (*_values(key), time.time()))

    def finish(self, key: Key, result: dict) -> None:
        self.db.execute(
            "UPDATE jobs SET state='done', outcome=?, reason=?, result=?, updated=? "
            "WHERE assignment=? AND student=? AND submission_sha=? AND tests_sha=?",
            (result["outcome"], result["reason"], json.dumps(result), time.time(), *_values(key)))


def _values(key: Key) -> tuple[str, str, str, str]:
    return key.assignment, key.student, key.submission_sha, key.tests_sha
