"""The sandboxed grader (`python -m grader`, COURSE.md section 11): grades decided outside the
student's process, one sandbox per submission, a resumable coordinator, dask as the engine.

Most cases grade a tiny two-test assignment written here (`tiny`: NumPy only, so a sandboxed run
costs a fraction of a second) in one batch of misbehaving students, graded once per module, in
warm sandboxes; the sandbox's own tests run both cold and warm. tests/test_grader_assignments.py
grades the course's converted problem sets for real.
"""
from __future__ import annotations

import copy
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader import convention, coordinator, grade, sandbox, warm
from grading import sandboxes_used, warm_problem

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SECRET = "s3cr3t-7431"  # only in the instructor notebook's check and the course's files

pytestmark = pytest.mark.skipif(
    subprocess.run(["bwrap", "--ro-bind", "/", "/", "true"], capture_output=True).returncode != 0
    if sandbox.shutil.which("bwrap") else True, reason="bubblewrap is missing or cannot run: make sandbox")


# -- the tiny assignment ----------------------------------------------------------------------

def _cell(source, grade_id, **meta):
    return new_code_cell(source, metadata={"nbgrader": {"grade_id": grade_id, "schema_version": 3,
                                                        "grade": False, "solution": False,
                                                        "locked": False, "task": False, **meta}})


def tiny_notebook(double="return 2 * x", answer=f"return {SECRET!r}") -> nbformat.NotebookNode:
    """setup; double (answer); test_double (3 points); answer (answer); test_secret (2 points)."""
    return new_notebook(cells=[
        _cell("import numpy as np", "setup", locked=True),
        _cell(f"def double(x):\n    ### BEGIN SOLUTION\n    {double}\n    ### END SOLUTION", "double", solution=True),
        _cell("assert double(1) == 2\n### BEGIN HIDDEN TESTS\nxs = np.arange(5.0)\n### PROBE\n"
              "probe = {'y': np.asarray(double(xs), dtype=float)}\n### CHECK\n"
              "assert np.allclose(probe['y'], 2 * xs), 'double is wrong'\n### END HIDDEN TESTS",
              "test_double", grade=True, locked=True, points=3),
        _cell(f"def answer():\n    ### BEGIN SOLUTION\n    {answer}\n    ### END SOLUTION", "answer", solution=True),
        _cell("# Hidden tests\n### BEGIN HIDDEN TESTS\n### PROBE\nprobe = {'answer': answer()}\n### CHECK\n"
              f"assert probe['answer'] == {SECRET!r}, 'wrong answer'\n### END HIDDEN TESTS",
              "test_secret", grade=True, locked=True, points=2),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def with_cells(double: str | None = None, answer: str | None = None) -> nbformat.NotebookNode:
    """The tiny submission with its answer cells replaced by a student's code."""
    nb = tiny_notebook()
    for cell in nb.cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if grade_id == "double" and double is not None:
            cell.source = double
        if grade_id == "answer" and answer is not None:
            cell.source = answer
    return nb


PERFECT_ANSWER = f"def answer():\n    return {SECRET!r}"
ORPHAN_MARK = "987654"  # the argument of the `sleep` that the orphan student leaves behind


def edited(change) -> nbformat.NotebookNode:
    """The perfect submission after `change(notebook)`: what a student did to the file."""
    nb = tiny_notebook()
    change(nb)
    return nb


def graded_cells(nb) -> list:
    return [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"].startswith("test_")]


def make_course(root: Path, students: dict) -> Path:
    """A course folder: the tiny instructor notebook, a gradebook-like file holding the secret,
    and each student's submission (a notebook, or raw bytes for a malformed one)."""
    (root / "solutions" / "tiny").mkdir(parents=True, exist_ok=True)
    nbformat.write(tiny_notebook(), root / "solutions" / "tiny" / "tiny.ipynb")
    (root / "secrets.db").write_text(f"secret = {SECRET}\n")
    for student, nb in students.items():
        folder = root / "submitted" / student / "tiny"
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, bytes):
            (folder / "tiny.ipynb").write_bytes(nb)
        else:
            nbformat.write(nb, folder / "tiny.ipynb")
        # what `nbgrader submit` writes beside the notebook, and `nbgrader collect` keeps
        (folder / "timestamp.txt").write_text("2026-12-06 12:00:00.000000 UTC")
        (folder / "submission_secret.txt").write_text(f"secret-of-{student}")
    return root


GRADER_OUTPUT = ("sandbox_grading", "feedback")  # what the grader itself writes into a course


def digest_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` but the grader's own output."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in GRADER_OUTPUT}


# -- the adversarial batch ---------------------------------------------------------------------

def adversarial(course: Path, port: int) -> dict:
    """Student id -> submission. Each is named for what it tries."""
    read = (
        "def answer():\n"
        "    import re\n"
        f"    for path in [{str(course / 'solutions/tiny/tiny.ipynb')!r}, {str(course / 'secrets.db')!r},\n"
        f"                 {str(course / 'submitted/perfect/tiny/tiny.ipynb')!r}, {str(REPO / 'solutions')!r},\n"
        "                 '/grading/runner.py']:\n"
        "        try:\n"
        "            found = re.search(r's3cr3t-\\d+', open(path).read())\n"
        "            if found: return found.group(0)\n"
        "        except Exception as exc:\n"
        "            print('READ', path, type(exc).__name__)\n"
        "    return 'nothing'\n")
    write = (
        "def answer():\n"
        "    return 'nothing'\n"
        f"for path in [{str(course / 'solutions/tiny/tiny.ipynb')!r}, {str(course / 'secrets.db')!r},\n"
        f"             {str(course / 'planted.txt')!r}, {str(REPO / 'tlutils/planted.py')!r},\n"
        "             '/grading/runner.py', '/usr/planted']:\n"
        "    try:\n"
        "        open(path, 'w').write('planted')\n"
        "        print('WROTE', path)\n"
        "    except Exception as exc:\n"
        "        print('WRITE', path, type(exc).__name__)\n")
    network = (
        "import socket\n"
        "def answer():\n"
        "    try:\n"
        f"        return socket.create_connection(('127.0.0.1', {port}), timeout=2).recv(100).decode()\n"
        "    except Exception as exc:\n"
        "        print('NET', type(exc).__name__)\n"
        "        return 'offline'\n")
    monkeypatch = (
        "import numpy as np, math, unittest\n"
        "np.allclose = lambda *a, **k: True\n"
        "np.testing.assert_allclose = lambda *a, **k: None\n"
        "math.isclose = lambda *a, **k: True\n"
        "unittest.TestCase.assertEqual = lambda *a, **k: None\n"
        "def double(x):\n    return x\n")
    forger = (  # the runner's json.dump writes what the student wants: an oversized result for
        # test_double, and for test_secret an array whose pickle would run a command on load
        "import json, os, numpy as np\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {course}/pwned',))\n"
        "os.makedirs('/grading/out/test_secret', exist_ok=True)\n"
        "np.save('/grading/out/test_secret/a0.npy', np.array([Payload()], dtype=object), allow_pickle=True)\n"
        "def forged(record, f, **kwargs):\n"
        "    if 'test_double' in f.name:\n"
        "        f.write('{\"value\": {\"$dict\": [[\"y\", [' + ','.join(['0.0'] * 600000) + ']]]}}')\n"
        "    else:\n"
        "        f.write('{\"value\": {\"$dict\": [[\"answer\", {\"$ndarray\": \"a0.npy\"}]]}}')\n"
        "json.dump = forged\n"
        "def double(x):\n    return 2 * x\n")
    shadow = (  # a numpy.py and a torch.py in the working directory, first on the path
        "import os, sys\n"
        "for name in ('numpy', 'torch'):\n"
        "    open(f'{name}.py', 'w').write('allclose = lambda *a, **k: True\\nequal = allclose\\n')\n"
        "sys.path.insert(0, os.getcwd())\n"
        "for name in [m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')]:\n"
        "    del sys.modules[name]\n"
        "def double(x):\n    return x\n")
    hooks = (  # interpreter and IPython hooks: tracing, exceptions, imports, display, exit
        "import atexit, builtins, sys, types\n"
        "sys.settrace(lambda *a: None)\n"
        "sys.excepthook = lambda *a: None\n"
        "sys.displayhook = lambda *a: None\n"
        "real_import = builtins.__import__\n"
        "builtins.__import__ = lambda name, *a, **k: real_import(name, *a, **k)\n"
        "builtins.get_ipython = lambda: types.SimpleNamespace(events=None)\n"
        "atexit.register(lambda: print('ATEXIT RAN'))\n"
        "def double(x):\n    return x\n")
    disk = (  # files in the work directory and /tmp until the disk is full
        "import os\n"
        "for folder in ('.', '/tmp'):\n"
        "    n = 0\n"
        "    try:\n"
        "        while n < 1000:\n"
        "            open(os.path.join(folder, f'junk{n}'), 'wb').write(b'x' * (4 << 20))\n"
        "            n += 1\n"
        "    except OSError as exc:\n"
        "        print('DISK', folder, n, exc.errno)\n")
    out_bomb = (  # files in the output directory, whose size the grader watches
        "n = 0\n"
        "while True:\n"
        "    open(f'/grading/out/junk{n}', 'wb').write(b'x' * (4 << 20))\n"
        "    n += 1\n")
    return {
        "perfect": tiny_notebook(),
        "blank": with_cells("def double(x):\n    raise NotImplementedError()",
                            "def answer():\n    raise NotImplementedError()"),
        "monkeypatch": with_cells(monkeypatch),
        "reads_secrets": with_cells(answer=read),
        "writes_outside": with_cells(answer=write),
        "network": with_cells(answer=network),
        "forger": with_cells(forger),
        "os_exit": with_cells(answer=PERFECT_ANSWER + "\nimport os\nos._exit(1)"),
        "sys_exit": with_cells(answer=PERFECT_ANSWER + "\nimport sys\nsys.exit(1)"),
        "busy_loop": with_cells(answer=PERFECT_ANSWER + "\nwhile True:\n    pass"),
        "loop_blocks_timer": with_cells(answer=PERFECT_ANSWER + "\nimport signal\n"
                                        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"),
        "flood": with_cells(answer=PERFECT_ANSWER + "\nimport sys\nwhile True:\n    sys.stdout.write('x' * 65536)"),
        "malformed": b"{ this is not a notebook",
        "html_injection": with_cells("def double(x):\n    raise ValueError('<script>alert(1)</script>' * 1000)"),
        "shadows_modules": with_cells(shadow),
        "hooks": with_cells(hooks),
        "kills_parent": with_cells(answer=PERFECT_ANSWER + "\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
        "orphan": with_cells(answer=PERFECT_ANSWER + "\nimport os\nif os.fork() == 0:\n    os.setsid()\n"
                             f"    os.execv('/bin/sleep', ['sleep', '{ORPHAN_MARK}'])"),
        "sleeps": with_cells(answer=PERFECT_ANSWER + "\nimport time\ntime.sleep(1000)"),
        "disk_bomb": with_cells(answer=PERFECT_ANSWER + "\n" + disk),
        "out_bomb": with_cells(answer=PERFECT_ANSWER + "\n" + out_bomb),
        "old_nbformat": nbformat.writes(tiny_notebook()).replace('"nbformat": 4', '"nbformat": 3').encode(),
        "deletes_test": edited(lambda nb: nb.cells.remove(graded_cells(nb)[0])),
        "duplicates_test": edited(lambda nb: nb.cells.append(
            new_code_cell(graded_cells(nb)[0].source, metadata=copy.deepcopy(graded_cells(nb)[0].metadata)))),
        "other_kernel": edited(lambda nb: nb.metadata.update(kernelspec={"name": "ir", "display_name": "R"})),
        "edits_tests": edited(lambda nb: [c.update(source="pass") or c.metadata["nbgrader"].update(points=100)
                                          for c in graded_cells(nb)]),
        # only where a cgroup holds it: without one, memory is not limited (see grader.sandbox)
        **({"memory_bomb": with_cells(answer=PERFECT_ANSWER + "\nhog = [bytearray(64 << 20) for _ in range(64)]")}
           if CGROUPS else {}),
    }


TINY_LIMITS = sandbox.Limits(wall_s=20, cell_s=3, cpu_s=30, memory_bytes=512 << 20, file_bytes=8 << 20,
                             disk_bytes=64 << 20)


def _cgroups_available() -> bool:
    group = sandbox.Cgroup(TINY_LIMITS)
    group.remove()
    return group.active


CGROUPS = _cgroups_available()


WARM_PROBLEM = warm_problem()


@pytest.fixture(scope="module")
def secret_server():
    """A TCP server on the host's loopback that hands out the secret to whoever connects."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.sendall(SECRET.encode())
                conn.close()
            except OSError:
                pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory, secret_server):
    course = tmp_path_factory.mktemp("tiny_course")
    make_course(course, adversarial(course, secret_server))
    before = digest_tree(course)
    summary = coordinator.autograde(course, "tiny", workers=2, limits=TINY_LIMITS, log=lambda line: None)
    return course, before, summary


def score(result: dict) -> dict[str, float]:
    return {t["grade_id"]: t["points"] for t in result["tests"]}


@pytest.mark.slow
def test_every_submission_reaches_an_outcome(batch):
    course, _, summary = batch
    assert set(summary.results) == set(adversarial(course, 0)) and summary.complete
    assert score(summary.results["perfect"]) == {"test_double": 3.0, "test_secret": 2.0}
    assert score(summary.results["blank"]) == {"test_double": 0.0, "test_secret": 0.0}
    # every run that reached a sandbox ran in a warm one, where this machine allows it
    assert sandboxes_used(summary.results) == {"cold" if WARM_PROBLEM else "warm"}


@pytest.mark.slow
def test_monkeypatched_comparisons_do_not_pass_a_wrong_answer(batch):
    result = batch[2].results["monkeypatch"]
    assert score(result)["test_double"] == 0.0
    assert "double is wrong" in result["tests"][0]["message"]


@pytest.mark.slow
def test_the_sandbox_cannot_read_tests_solutions_or_other_students(batch):
    result = batch[2].results["reads_secrets"]
    assert score(result)["test_secret"] == 0.0
    assert result["output_tail"].count("FileNotFoundError") == 4, result["output_tail"]  # none is there


@pytest.mark.slow
def test_the_sandbox_cannot_write_outside_its_work_dir(batch):
    course, before, summary = batch
    result = summary.results["writes_outside"]
    assert "WROTE" not in result["output_tail"], result["output_tail"]
    assert digest_tree(course) == before  # no course file changed, nothing planted
    assert not (REPO / "tlutils" / "planted.py").exists()


@pytest.mark.slow
def test_no_network(batch):
    result = batch[2].results["network"]
    assert score(result)["test_secret"] == 0.0 and "NET" in result["output_tail"]


@pytest.mark.slow
def test_forged_result_files_are_rejected_and_never_unpickled(batch):
    course, _, summary = batch
    messages = {t["grade_id"]: t["message"] for t in summary.results["forger"]["tests"]}
    assert score(summary.results["forger"]) == {"test_double": 0.0, "test_secret": 0.0}
    assert "over the limit" in messages["test_double"]
    assert "not a valid .npy" in messages["test_secret"]
    assert not (course / "pwned").exists()


@pytest.mark.slow
def test_process_control_and_loops_end_with_an_outcome_and_a_reason(batch):
    results = batch[2].results
    crashed = results["os_exit"]
    assert crashed["outcome"] == "crashed" and "exit status 1" in crashed["reason"]
    assert score(crashed) == {"test_double": 3.0, "test_secret": 0.0}  # what ran before still counts
    assert results["sys_exit"]["outcome"] == "graded"
    assert score(results["sys_exit"]) == {"test_double": 3.0, "test_secret": 2.0}  # as in a kernel
    loop = results["busy_loop"]  # the cell is interrupted, the rest of the notebook runs
    assert loop["outcome"] == "graded" and score(loop)["test_secret"] == 2.0
    assert any("ran out of time" in note for note in loop["notes"])
    blocked = results["loop_blocks_timer"]
    assert blocked["outcome"] == "timeout" and "20 s" in blocked["reason"]
    assert "loop_blocks_timer" in batch[2].need_a_person


@pytest.mark.slow
def test_limits_are_outcomes(batch):
    results = batch[2].results
    assert results["flood"]["outcome"] == "limit-exceeded" and "output" in results["flood"]["reason"]
    assert results["malformed"]["outcome"] == "malformed" and "not a readable notebook" in results["malformed"]["reason"]
    if CGROUPS:
        bomb = results["memory_bomb"]
        assert bomb["outcome"] == "limit-exceeded" and "memory" in bomb["reason"], bomb["reason"]
        assert score(bomb)["test_double"] == 3.0


@pytest.mark.slow
def test_shadowing_modules_and_hooks_change_no_grade(batch):
    results = batch[2].results
    for student in ("shadows_modules", "hooks"):
        assert results[student]["outcome"] == "graded", results[student]["reason"]
        assert score(results[student]) == {"test_double": 0.0, "test_secret": 2.0}, student
    assert "ATEXIT RAN" not in results["hooks"]["output_tail"]


@pytest.mark.slow
def test_killing_the_parent_or_leaving_a_child_behind_ends_with_the_run(batch):
    results = batch[2].results
    assert results["kills_parent"]["outcome"] in ("graded", "crashed"), results["kills_parent"]["reason"]
    assert score(results["kills_parent"])["test_double"] == 3.0
    assert score(results["orphan"]) == {"test_double": 3.0, "test_secret": 2.0}
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline")
            if ORPHAN_MARK.encode() in (p.read_bytes() if p.exists() else b"")
            and b"pytest" not in p.read_bytes()]
    assert not left, "the orphan's sleep outlived its sandbox"


@pytest.mark.slow
def test_sleeping_and_disk_bombs_are_stopped(batch):
    results = batch[2].results
    sleeps = results["sleeps"]
    assert sleeps["outcome"] == "graded" and any("ran out of time" in n for n in sleeps["notes"])
    bomb = results["disk_bomb"]
    assert bomb["outcome"] == "graded" and score(bomb) == {"test_double": 3.0, "test_secret": 2.0}
    full = [line.split() for line in bomb["output_tail"].splitlines() if line.startswith("DISK")]
    assert [(folder, errno) for _, folder, _, errno in full] == [(".", "28"), ("/tmp", "28")], full  # ENOSPC
    assert all(int(n) * 4 <= 64 for _, _, n, _ in full)
    out = results["out_bomb"]
    assert out["outcome"] == "limit-exceeded" and "results written" in out["reason"], out["reason"]


@pytest.mark.slow
def test_feedback_is_released_by_nbgrader_and_shows_no_hidden_test(batch, tmp_path):
    course, _, summary = batch
    exchange = tmp_path / "exchange"  # nbgrader's exchange folder, which an instructor creates
    exchange.mkdir(mode=0o777)
    run = subprocess.run([str(Path(PY).parent / "nbgrader"), "release_feedback", "tiny",
                          f"--Exchange.root={exchange}", "--CourseDirectory.course_id=tiny"],
                         cwd=course, capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{Path(PY).parent}:{os.environ['PATH']}"})
    assert run.returncode == 0, run.stderr
    from nbgrader.utils import notebook_hash
    for student in summary.results:
        page = (course / "feedback" / student / "tiny" / "tiny.html").read_text()
        released = exchange / "tiny" / "feedback" / f"{notebook_hash(secret=f'secret-of-{student}', notebook_id='tiny')}.html"
        assert released.read_text() == page, student
        assert SECRET not in page and "PROBE" not in page and "allclose" not in page, student
        assert "<script" not in page.lower(), student
    perfect = (course / "feedback" / "perfect" / "tiny" / "tiny.html").read_text()
    assert "Score on the autograded tests: 5 / 5" in perfect
    assert "double is wrong" in (course / "feedback" / "monkeypatch" / "tiny" / "tiny.html").read_text()
    injected = (course / "feedback" / "html_injection" / "tiny" / "tiny.html").read_text()
    assert "&lt;script&gt;alert(1)" in injected and len(injected) < 5000  # escaped and capped


@pytest.mark.slow
def test_malformed_and_edited_notebooks(batch):
    results = batch[2].results
    assert results["old_nbformat"]["outcome"] == "malformed"
    deleted = results["deletes_test"]
    assert score(deleted) == {"test_double": 3.0, "test_secret": 2.0}
    assert any("missing from the notebook" in n for n in deleted["notes"])
    duplicated = results["duplicates_test"]
    assert score(duplicated) == {"test_double": 3.0, "test_secret": 2.0}
    assert any("more than once" in n for n in duplicated["notes"])
    assert score(results["other_kernel"]) == {"test_double": 3.0, "test_secret": 2.0}
    edited_tests = results["edits_tests"]  # locked cells run as released, points come from the tests
    assert score(edited_tests) == {"test_double": 3.0, "test_secret": 2.0}
    assert sum(t["max_points"] for t in edited_tests["tests"]) == 5.0


# -- the sandbox itself ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fork_server():
    """A warm sandbox (grader.warm) with NumPy imported, for this module's direct runs."""
    if WARM_PROBLEM:
        pytest.skip(f"no warm sandbox on this machine: {WARM_PROBLEM}")
    server = warm.ForkServer(("numpy",))
    yield server
    server.close()


def cold(tmp_path: Path):
    sandbox.prepare(tmp_path)
    return tmp_path, sandbox.run


def warm_box(server: warm.ForkServer):
    """A `box` that runs in `server`: a fresh job folder of its own, and its run function."""
    return lambda _: (server.folder(), server.run)


@pytest.fixture(params=["cold", "warm"])
def box(request):
    """Where `run_cells` runs: `box(tmp_path)` -> (a prepared job folder, its run function)."""
    if request.param == "cold":
        return cold
    return warm_box(request.getfixturevalue("fork_server"))


def run_cells(box, tmp_path, *sources, limits=sandbox.Limits(wall_s=30, cell_s=10)) -> sandbox.Result:
    folder, run = box(tmp_path)
    program = {"out_dir": sandbox.OUT, "cell_timeout_s": limits.cell_s,
               "cells": [{"source": s} for s in sources]}
    return run(folder, __import__("json").dumps(program).encode(), limits)


def test_sandbox_runs_unprivileged_and_sees_no_course_files(box, tmp_path):
    result = run_cells(box, tmp_path, "import os\nprint('UID', os.getuid(), os.getgid())\n"
                       f"print('SEES', sorted(os.listdir({str(REPO)!r})))\n"
                       "print('GRADING', sorted(os.listdir('/grading')), os.listdir('/grading/jobs') "
                       "if os.path.isdir('/grading/jobs') else None)\n"
                       "print('CAPS', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
                       "try:\n    import grader\nexcept ImportError:\n    print('NO GRADER')")
    assert result.returncode == 0, result.output_tail
    assert "UID 65534 65534" in result.output_tail
    assert "SEES ['.venv', 'tlutils']" in result.output_tail
    assert "NO GRADER" in result.output_tail
    assert "CAPS 0000000000000000" in result.output_tail
    assert "GRADING ['out', 'runner.py', 'work'] None" in result.output_tail \
        or "GRADING ['forkserver.py', 'jobs', 'out', 'runner.py', 'work'] []" in result.output_tail  # jobs hidden


def test_sandbox_limits_processes(box, tmp_path):
    limits = sandbox.Limits(wall_s=30, cell_s=10, processes=16)
    result = run_cells(box, tmp_path, "import os\nn = 0\ntry:\n    while n < 100:\n        if os.fork() == 0:\n"
                       "            import time; time.sleep(5); os._exit(0)\n        n += 1\n"
                       "except OSError as exc:\n    print('FORKS', n, type(exc).__name__)", limits=limits)
    assert "FORKS" in result.output_tail and int(result.output_tail.split("FORKS")[1].split()[0]) < 16


def test_warm_sandbox_keeps_consecutive_submissions_apart(fork_server, tmp_path):
    """What one child of the fork server leaves or does never reaches the next, nor the server."""
    first = run_cells(warm_box(fork_server), tmp_path,
                      "import os, ctypes\n"
                      "for path in ('/tmp/left', '/dev/shm/left', 'left'):\n    open(path, 'w').write('x')\n"
                      "libc = ctypes.CDLL(None, use_errno=True)\n"
                      "print('UNHIDE', libc.umount2(b'/grading/jobs', 2))\n"  # the mount is locked
                      "print('USERNS', libc.unshare(0x10000000 | 0x20000), libc.umount2(b'/grading/jobs', 2),"
                      " os.listdir('/grading/jobs'))\n"
                      "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
                      "    for name in ('mem', 'environ', 'fd'):\n"
                      "        try:\n"
                      "            os.listdir(f'/proc/{pid}/fd') if name == 'fd' else open(f'/proc/{pid}/{name}', 'rb').read(1)\n"
                      "            print('READ', pid, name, open(f'/proc/{pid}/cmdline', 'rb').read()[:60])\n"
                      "        except OSError:\n"
                      "            pass\n"
                      "print('ME', os.getpid(), os.getppid())\n"
                      "os.kill(os.getppid(), 9)")
    assert first.returncode == 0, first.output_tail
    assert "UNHIDE -1" in first.output_tail and "USERNS 0 -1 []" in first.output_tail
    readable = {line.split()[1] for line in first.output_tail.splitlines() if line.startswith("READ")}
    assert len(readable) == 1, first.output_tail  # its own process only: not the server, nor its init
    assert "ME 2 1" in first.output_tail  # below an init of its own, which ignores the kill
    second = run_cells(warm_box(fork_server), tmp_path,
                       "import os\nprint('SEES', [os.path.exists(p) for p in ('/tmp/left', '/dev/shm/left', 'left')])")
    assert "SEES [False, False, False]" in second.output_tail, second.output_tail


def test_a_fork_server_that_dies_mid_run_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(warm, "_local", threading.local())
    server = warm.server_for(("numpy",))
    if server is None:
        pytest.skip(f"no warm sandbox on this machine: {warm.last_problem()}")
    folder = server.folder()
    threading.Timer(1.0, os.kill, (server.pid, signal.SIGKILL)).start()
    with pytest.raises(warm.Broken, match="ended"):
        run_cells(lambda _: (folder, server.run), tmp_path, "import time\ntime.sleep(20)")
    assert server.proc.poll() is not None and not server.jobs.exists()  # stopped and cleaned up
    fresh = warm.server_for(("numpy",))
    assert fresh is not server and fresh.proc.poll() is None
    fresh.close()


def test_a_new_fork_server_removes_what_killed_workers_left(tmp_path, monkeypatch):
    """A worker killed without `atexit` leaves its server's folder and log; the next server started
    on the machine deletes them, and leaves those of live processes alone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale, live = (tmp_path / f"{warm.PREFIX}{pid}-abc" for pid in (ended.pid, os.getpid()))
    for folder in (stale, live):
        (folder / "job-x").mkdir(parents=True)
        folder.with_suffix(".log").write_text("log")
    warm._remove_stale_folders()
    assert not stale.exists() and not stale.with_suffix(".log").exists()
    assert live.exists() and live.with_suffix(".log").exists()


# -- the convention ---------------------------------------------------------------------------

def test_convention_splits_a_hidden_test():
    visible, shared, probe, check = convention.split(
        "a = 1\n### BEGIN HIDDEN TESTS\nx = 2\n### PROBE\nprobe = {}\n### CHECK\nassert True\n"
        "### END HIDDEN TESTS\n", "t")
    assert (visible, shared, probe, check) == ("a = 1", "x = 2\n", "probe = {}\n", "assert True\n")
    with pytest.raises(convention.NotConverted):
        convention.split("### BEGIN HIDDEN TESTS\nassert f(1) == 2\n### END HIDDEN TESTS\n", "t")


def test_a_warm_sandbox_preloads_what_the_instructor_code_imports(tmp_path):
    make_course(tmp_path, {})
    assert convention.load_assignment(tmp_path, "tiny").imports() == ("numpy",)


def test_without_a_warm_sandbox_the_grade_comes_from_a_cold_one_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(warm, "_local", threading.local())  # no server from an earlier test
    monkeypatch.setattr(warm.sandbox, "forkserver_command", lambda jobs, modules: ["/bin/false"])
    make_course(tmp_path, {})
    spec = convention.load_assignment(tmp_path, "tiny")
    result = grade.grade(spec, {"tiny.ipynb": nbformat.writes(tiny_notebook()).encode()}, TINY_LIMITS)
    assert result["sandbox"].startswith("cold: the fork server ended"), result["sandbox"]
    assert score(result) == {"test_double": 3.0, "test_secret": 2.0}


def test_unconverted_assignment_is_refused(tmp_path):
    nb = tiny_notebook()
    graded_cells(nb)[0].source = "### BEGIN HIDDEN TESTS\nassert double(3) == 6\n### END HIDDEN TESTS"
    make_course(tmp_path, {})
    nbformat.write(nb, tmp_path / "solutions" / "tiny" / "tiny.ipynb")
    result = subprocess.run([PY, "-m", "grader", "autograde", "tiny", "--course", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "not converted" in result.stderr


# -- resuming after kill -9, and a real dask cluster ------------------------------------------

SLOW_ANSWER = PERFECT_ANSWER + "\nimport time\ntime.sleep(3)"


def cli(course: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "grader", "autograde", "tiny", "--course", str(course),
                             "--timeout", "60", "--cell-timeout", "20", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def process_group(pgid: int) -> list[str]:
    """The command lines of the processes still in process group `pgid`."""
    found = subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True)
    return found.stdout.splitlines()


def done_students(course: Path) -> set[str]:
    """The students with a result in the store; none while the coordinator has not yet made it
    (the file can exist a moment before its table does)."""
    path = coordinator.results_path(course, "tiny")
    if not path.exists():
        return set()
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return {row[0] for row in db.execute("SELECT student FROM jobs WHERE state='done'")}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return set()
            raise


@pytest.mark.slow
def test_kill_9_then_rerun_grades_exactly_the_missing_students(tmp_path):
    students = {f"s{i}": with_cells(answer=SLOW_ANSWER) for i in range(4)}
    course = make_course(tmp_path, students)
    first = cli(course, "--workers", "1")
    deadline = time.monotonic() + 240
    while not done_students(course) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(process_group(first.pid)) > 1, "the coordinator's workers should be running"
    os.kill(first.pid, signal.SIGKILL)  # the coordinator alone, as the out-of-memory killer would
    first.wait()
    deadline = time.monotonic() + 60    # its workers and their sandboxes must not outlive it
    while (left := process_group(first.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes outlived the coordinator: {left}"
    finished = done_students(course)
    assert finished and finished != set(students), "kill the coordinator in mid-batch"
    second = cli(course, "--workers", "1")
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    regraded = {line.split(":")[0].strip() for line in output.splitlines() if line.startswith("  s")}
    assert regraded == set(students) - finished, output
    assert done_students(course) == set(students)
    assert f"already graded: {len(finished)}" in output


@pytest.mark.slow
def test_grades_through_a_real_dask_scheduler_and_two_workers(tmp_path):
    course = make_course(tmp_path / "course", {"perfect": tiny_notebook(), "slow": with_cells(answer=SLOW_ANSWER),
                                               "blank": with_cells("def double(x):\n    raise NotImplementedError()")})
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dask = str(Path(PY).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file),
                                           "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = __import__("json").loads(scheduler_file.read_text())["address"]
        from distributed import Client
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        run = cli(course, "--scheduler", address)
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
        assert f"engine: dask scheduler {address}, 2 workers" in output
        assert "perfect: graded, 5 / 5" in output and "slow: graded, 5 / 5" in output
        assert "blank: graded, 2 / 5" in output
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
