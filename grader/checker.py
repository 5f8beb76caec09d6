"""The trusted checker: reads what a sandbox exported, as plain data only, and decides each test.

Everything under the run's output folder was written by the student's process, so it is read
as hostile: no symbolic links (O_NOFOLLOW, relative to an opened folder), regular files only,
sizes capped before reading, JSON with a fixed set of tags, arrays by `np.load(allow_pickle=False)`
of numeric dtypes only. Nothing is ever unpickled. The check code is the instructor's; it runs in
this process (a grading worker, never the sandbox), in a fresh namespace holding the notebook's
setup (computed once per worker and assignment), the shared part of its test and `probe`.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.convention import Spec, Test

MAX_JSON_BYTES = 1 << 20          # one probe.json
MAX_ARRAY_BYTES = 64 << 20        # one .npy file
MAX_TOTAL_BYTES = 256 << 20       # all the arrays of one test
MAX_MESSAGE = 500
ARRAY_NAME = re.compile(r"a[0-9]{1,6}\.npy")  # as the runner names them


class Malformed(ValueError):
    """A probe's exported data that the checker refuses to read."""


@dataclass(frozen=True)
class TestResult:
    """One test's verdict: what feedback and the gradebook show."""

    grade_id: str
    points: float
    max_points: float
    passed: bool
    message: str


def _read(dir_fd: int, name: str, limit: int) -> bytes:
    """A regular file's bytes, opened without following links, at most `limit` bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        raise Malformed(f"{name} is missing") from None
    except OSError as exc:
        raise Malformed(f"{name} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Malformed(f"{name} is not a regular file")
        if info.st_size > limit:
            raise Malformed(f"{name} is {info.st_size} bytes, over the limit of {limit}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Malformed(f"{name} is over the limit of {limit} bytes")
        return data
    finally:
        os.close(fd)


class _Decoder:
    """Turns a probe.json's tagged JSON back into values, loading its arrays on the way."""

    def __init__(self, dir_fd: int):
        self.dir_fd, self.total = dir_fd, 0

    def array(self, name) -> np.ndarray:
        if not isinstance(name, str) or not ARRAY_NAME.fullmatch(name):
            raise Malformed(f"bad array file name {name!r}")
        data = _read(self.dir_fd, name, MAX_ARRAY_BYTES)
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise Malformed("the arrays are over the total size limit")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 (any failure to parse is the file's fault)
            raise Malformed(f"{name} is not a valid .npy file ({type(exc).__name__})") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
            raise Malformed(f"{name} does not hold a numeric array")
        return array

    def value(self, data, depth: int = 0):
        if depth > 50:
            raise Malformed("the probe's data is nested too deeply")
        if data is None or type(data) in (bool, int, float, str):
            return data
        if type(data) is list:
            return [self.value(v, depth + 1) for v in data]
        if type(data) is dict and len(data) == 1 and "$tuple" in data and type(data["$tuple"]) is list:
            return tuple(self.value(v, depth + 1) for v in data["$tuple"])
        if type(data) is dict and len(data) == 1 and type(data.get("$dict")) is list:
            out = {}
            for pair in data["$dict"]:
                if type(pair) is not list or len(pair) != 2:
                    raise Malformed("a malformed dict entry")
                key = self.value(pair[0], depth + 1)
                if isinstance(key, (list, np.ndarray)) or (isinstance(key, tuple) and not _hashable(key)):
                    raise Malformed("a dict key that is not hashable")
                out[key] = self.value(pair[1], depth + 1)
            return out
        if type(data) is dict and set(data) == {"$ndarray"}:
            return self.array(data["$ndarray"])
        if type(data) is dict and set(data) == {"$tensor", "dtype"}:
            import torch
            return torch.from_numpy(self.array(data["$tensor"]).copy())
        raise Malformed(f"unexpected data of type {type(data).__name__}")


def _hashable(value) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


def load_probe(out: Path, grade_id: str):
    """('value', decoded probe) or ('error', the student's error message), from out/<grade_id>/."""
    try:
        dir_fd = os.open(Path(out) / grade_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise Malformed("no result: the notebook stopped before this test ran") from None
    except OSError:
        raise Malformed("the result folder is not a plain folder") from None
    try:
        data = _read(dir_fd, "probe.json", MAX_JSON_BYTES)
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            raise Malformed("probe.json is not valid JSON") from None
        if type(record) is not dict or len(record) != 1:
            raise Malformed("probe.json has an unexpected layout")
        if "error" in record:
            return "error", str(record["error"])[:MAX_MESSAGE]
        if "value" not in record:
            raise Malformed("probe.json has an unexpected layout")
        value = _Decoder(dir_fd).value(record["value"])
        if type(value) is not dict:
            raise Malformed("the probe is not a dict")
        return "value", value
    finally:
        os.close(dir_fd)


_SETUP_CACHE: dict[str, dict] = {}


def setup_namespace(spec: Spec) -> dict:
    """The namespace after the notebook's setup cells, computed once per process and Spec."""
    key = spec.digest()
    if key not in _SETUP_CACHE:
        namespace: dict = {"__name__": "__grader_check__"}
        with contextlib.redirect_stdout(io.StringIO()):
            for index, source in enumerate(spec.setup):
                exec(compile(source, f"<setup {index}>", "exec"), namespace)
        _SETUP_CACHE[key] = namespace
    return _SETUP_CACHE[key]


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or "the test failed"
    return text if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {text}"


def check_one(spec: Spec, test: Test, out: Path) -> TestResult:
    """One test's verdict from out/<grade_id>/."""
    def verdict(passed: bool, message: str) -> TestResult:
        return TestResult(test.grade_id, test.points if passed else 0.0, test.points, passed,
                          message[:MAX_MESSAGE])
    try:
        kind, probe = load_probe(out, test.grade_id)
    except Malformed as exc:
        return verdict(False, f"no valid result: {exc}")
    if kind == "error":
        return verdict(False, f"your code raised {probe}")
    namespace = dict(setup_namespace(spec))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(test.shared + "\n", f"<shared {test.grade_id}>", "exec"), namespace)
            namespace["probe"] = probe
            exec(compile(test.check, f"<check {test.grade_id}>", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001 (a failed check is a verdict, not our failure)
        return verdict(False, _message(exc))
    return verdict(True, "passed")


def check_all(spec: Spec, out: Path) -> list[TestResult]:
    """Every test's verdict, in notebook order."""
    return [check_one(spec, test, out) for test in spec.tests]
