"""Warm sandboxes: a grading worker keeps one bubblewrap sandbox alive per assignment, in which
grader/forkserver.py has imported the assignment's modules once; each submission then runs in a
child forked from it, in namespaces of its own (see forkserver.py). A submission no longer pays
for starting Python and importing torch (seconds of CPU each) but is as isolated as in a cold
sandbox: its own PID, mount, IPC and network namespaces, private work directory, /tmp and
/dev/shm, no capabilities, the same rlimits and cgroup, the same wall-clock and output watch.

Where the machine does not allow it (no nested user namespaces, a module that starts threads at
import), `server_for` returns None and the caller uses a cold sandbox (`sandbox.run`).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from grader import sandbox

PREFIX = "tlgrader-warm-"   # + the owning process's PID: tlgrader-warm-<pid>-<random>
START_S = 300.0   # the imports, on a loaded machine
REPLY_S = 30.0    # a fork, or the status after a kill


class Broken(RuntimeError):
    """The fork server stopped answering: the job goes to a cold sandbox instead."""


class ForkServer:
    """One warm sandbox: the fork server's process and its jobs folder."""

    def __init__(self, modules: tuple[str, ...]):
        self.modules = modules
        _remove_stale_folders()
        self.jobs = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.log = self.jobs.with_suffix(".log")
        sandbox.give_to_sandbox(self.jobs)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(sandbox.forkserver_command(self.jobs, modules), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        self.buffer = b""
        try:
            hello = self._receive(START_S)
            if not hello.get("ready"):
                raise Broken(hello.get("problem") or "the fork server did not start")
        except (Broken, ValueError) as exc:
            self.close()
            raise Broken(str(exc)) from exc
        self.pid = _leaf(self.proc.pid)

    def folder(self) -> Path:
        """A fresh job folder (work/ and out/ in it) that this server's children can reach."""
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.jobs))
        sandbox.give_to_sandbox(folder)
        sandbox.prepare(folder)
        return folder

    def run(self, folder: Path, program: bytes, limits: sandbox.Limits) -> sandbox.Result:
        """Run `program` on the job in `folder` (made by `folder()`) in a forked child."""
        (folder / "program.json").write_bytes(program)
        cgroup = sandbox.Cgroup(limits)
        start = time.monotonic()
        try:
            self._send({"job": folder.name, "disk_bytes": limits.disk_bytes, "rlimits": sandbox.rlimits(limits)})
            self._receive(REPLY_S, "forked")
            child = _only_child(self.pid)
            pidfd = os.pidfd_open(child)  # names exactly this process, even after it is reaped
            try:
                if cgroup.active:
                    cgroup.add(child)
                self._send({"go": True})

                def wait(seconds: float | None) -> int | None:  # None: until the status comes
                    if seconds is None:
                        return self._receive(REPLY_S, "status")["status"]
                    reply = self._receive(seconds, "status", missing_ok=True)
                    return None if reply is None else reply["status"]

                def kill() -> None:  # the child; the kernel ends the rest of its namespace
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return sandbox.watch(wait, kill, folder, limits, cgroup, start)
            finally:
                os.close(pidfd)
        except Broken:  # out of step with it: never reuse it
            self.close()
            raise
        except (OSError, ValueError, KeyError) as exc:
            self.close()
            raise Broken(f"the fork server failed ({exc!r})") from exc
        finally:
            cgroup.kill_all()
            cgroup.remove()

    def _send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def _receive(self, seconds: float, key: str | None = None, missing_ok: bool = False) -> dict | None:
        """The server's next message (with `key` in it), waiting at most `seconds`."""
        deadline = time.monotonic() + seconds
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                if missing_ok:
                    return None
                raise Broken(f"no answer from the fork server in {seconds:g} s; its log: {self.log}")
            data = os.read(fd, 65536)
            if not data:
                raise Broken(f"the fork server ended (status {self.proc.poll()}); its log: {self.log}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if key is not None and key not in message:
            raise Broken(f"the fork server answered {message!r}, not {key!r}")
        return message

    def close(self) -> None:
        """Stop the server (its sandbox's processes die with it) and delete its files."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.jobs, ignore_errors=True)
        self.log.unlink(missing_ok=True)


def _remove_stale_folders() -> None:
    """Delete the jobs folders and logs of servers whose grading process has ended without
    closing them (a worker that was killed skips `atexit`)."""
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = path.name[len(PREFIX):].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _leaf(pid: int) -> int:
    """The end of the chain bwrap -> bwrap (PID 1 inside) -> fork server: the server's host PID."""
    while children := _children(pid):
        pid = children[0]
    return pid


def _only_child(pid: int) -> int:
    children = _children(pid)
    if len(children) != 1:
        raise Broken(f"the fork server has {len(children)} children, expected the one it forked")
    return children[0]


_local = threading.local()  # this thread's server, and the modules whose server could not start


def server_for(modules: tuple[str, ...]) -> ForkServer | None:
    """This thread's warm sandbox for `modules` (started, or restarted, as needed), or None where
    warm sandboxes do not work (the reason is in `last_problem()`)."""
    server = getattr(_local, "server", None)
    if server is not None and server.modules == modules and server.proc.poll() is None:
        return server
    if server is not None:
        server.close()
        _local.server = None
    if getattr(_local, "refused", None) == modules:
        return None
    try:
        _local.server = ForkServer(modules)
    except Broken as exc:
        _local.refused, _local.problem = modules, str(exc)
        return None
    atexit.register(_local.server.close)
    return _local.server


def last_problem() -> str:
    """Why this thread's last warm sandbox could not start."""
    return getattr(_local, "problem", "")
