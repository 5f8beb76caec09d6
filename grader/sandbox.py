"""A bubblewrap sandbox for one submission: the command line, the limits, and one run.

What the sandboxed process sees: a fresh root with the system (/usr, /etc) and the Python
environment (the interpreter's prefix, the venv, the course's `tlutils`) bound read-only; a private
work directory (also $HOME), /tmp and /dev/shm, each a tmpfs of at most `disk_bytes` (the
submission's files are bound into the work directory); an output directory for the results, on
the host's disk, whose size and file count the grader watches while the run lasts; its own PID,
IPC, UTS and network namespaces (no network at all, not even loopback to the host). Nothing
else of the host's files: not the course's solutions, gradebook, other submissions, nor this
`grader` package.

Who it runs as: an unprivileged uid (65534, `nobody`). When the grader runs as root, bwrap runs
privileged (no user namespace; inside one, the sandbox's uid would map back to host root and the
process-count limit would be ignored) and `setpriv` drops to the real host uid 65534 with every
capability gone before Python starts. When the grader runs as an ordinary user, bwrap makes a user
namespace in which the process appears as uid 65534 (on the host it is that user, so RLIMIT_NPROC
counts that user's processes).

Limits: CPU seconds, file size (which also caps the captured output, since stdout and stderr go to
one file; Python ignores SIGXFSZ, so a flood's writes fail with EFBIG and the output is cut
there), open files and processes by rlimits; disk by the tmpfs sizes, and for the output
directory by the watch (a run that writes more there, or more than MAX_OUT_FILES files, is
stopped); memory and the number of processes per submission by a cgroup where the grader may
create one (cgroup v1 or v2; as root on most Linux machines), else memory is not limited (a small
RLIMIT_AS breaks `import torch`); wall-clock time by the grader, which kills the whole process
group.
"""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
RUNNER = Path(__file__).with_name("runner.py")
FORKSERVER = Path(__file__).with_name("forkserver.py")
MAX_OUT_FILES = 10_000  # files in the output directory before the run is stopped
# where things appear inside the sandbox
WORK, OUT, RUNNER_IN = "/grading/work", "/grading/out", "/grading/runner.py"
JOBS_IN, FORKSERVER_IN = "/grading/jobs", "/grading/forkserver.py"


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    wall_s: float = 600.0          # the whole run, enforced from outside
    cell_s: float = 120.0          # one cell (nbgrader_config.py's Execute.timeout)
    cpu_s: int = 900               # CPU seconds, all threads together
    memory_bytes: int = 4 << 30    # by cgroup where available
    processes: int = 512           # threads count too (torch starts a pool)
    file_bytes: int = 64 << 20     # any one file written, and the captured output
    disk_bytes: int = 512 << 20    # the work directory, /tmp and /dev/shm each; the output directory
    open_files: int = 1024


@dataclass
class Result:
    """How a sandboxed run ended."""

    returncode: int | None
    timed_out: bool
    memory_exceeded: bool
    seconds: float
    output_tail: str
    output_bytes: int = 0
    disk_exceeded: bool = False

    @property
    def signal(self) -> int | None:
        """The signal that ended the program (bwrap reports it as 128 + the signal number)."""
        if self.returncode is not None and self.returncode > 128:
            return self.returncode - 128
        if self.returncode is not None and self.returncode < 0:
            return -self.returncode
        return None


def bwrap_path() -> str:
    """The bwrap executable; a clear error when it is not installed (`make sandbox` installs it)."""
    path = shutil.which("bwrap")
    if path is None:
        raise RuntimeError("bubblewrap is not installed: run `make sandbox` (Debian: apt-get install bubblewrap)")
    return path


def python_roots() -> list[Path]:
    """Folders that the sandbox's Python needs, read-only: the interpreter's installation, the venv,
    and the course's `tlutils` (installed in editable mode, so it lives in the course, not the venv)."""
    import importlib.util
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    spec = importlib.util.find_spec("tlutils")
    if spec is not None and spec.submodule_search_locations:
        roots.add(Path(next(iter(spec.submodule_search_locations))).resolve())
    # the venv's python is a symlink to the base interpreter: nothing more is needed
    return sorted(roots)


def _parents(path: Path) -> list[Path]:
    """`path`'s ancestors below /, outermost first."""
    return [p for p in reversed(path.parents) if p != Path("/")]


def _isolation(as_root: bool, disk_bytes: int) -> list[str]:
    """bwrap's arguments up to the grading folder: namespaces, /dev, /proc, private /tmp and
    /dev/shm, the system and the Python environment read-only."""
    args = [bwrap_path(), "--die-with-parent", "--new-session", "--clearenv"]
    if as_root:  # privileged bwrap, then a real drop to uid 65534 (see the module docstring)
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        args += ["--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    # /tmp first: a Python or course that lives under /tmp is bound on top of the private tmpfs
    size = ["--size", str(disk_bytes)]
    args += ["--dev", "/dev", "--proc", "/proc",
             "--perms", "1777", *size, "--tmpfs", "/tmp", "--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    args += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        target = Path("/", name)
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    made: set[Path] = set()
    for root in python_roots():
        for parent in _parents(root):
            if parent not in made and not str(parent).startswith(("/usr", "/etc")):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += ["--ro-bind", str(root), str(root)]
    return args + ["--perms", "0755", "--dir", "/grading"]


def _python(as_root: bool, script: str, cwd: str) -> list[str]:
    """bwrap's arguments from the root's remount on: read-only root, working directory `cwd`, the
    variables, the drop to uid 65534 when the grader runs as root, and the venv's interpreter (by
    its own path, so that its pyvenv.cfg makes the venv's packages visible) running `script`."""
    env = {"HOME": WORK, "TMPDIR": "/tmp", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    args = ["--remount-ro", "/", "--chdir", cwd]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if as_root:
        args += ["/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    return args + [str(Path(sys.executable).absolute()), "-I", script]


def command(work: Path, out: Path, as_root: bool | None = None, disk_bytes: int = Limits.disk_bytes) -> list[str]:
    """The bwrap command line that runs the runner with `work`'s files (a host folder) in its
    work directory and `out` (a host folder) as its output directory."""
    as_root = os.geteuid() == 0 if as_root is None else as_root
    args = _isolation(as_root, disk_bytes) + ["--perms", "1777", "--size", str(disk_bytes), "--tmpfs", WORK]
    for path in sorted(work.iterdir()):
        args += ["--bind", str(path), f"{WORK}/{path.name}"]
    args += ["--bind", str(out), OUT, "--ro-bind", str(RUNNER), RUNNER_IN]
    return args + _python(as_root, RUNNER_IN, WORK)


def forkserver_command(jobs: Path, modules: tuple[str, ...], as_root: bool | None = None) -> list[str]:
    """The bwrap command line of a warm sandbox (grader/forkserver.py): the jobs folder `jobs` (a
    host folder) bound where only the fork server and its children's set-up see it, the work and
    output directories as mount points, and `modules` to import once."""
    as_root = os.geteuid() == 0 if as_root is None else as_root
    args = _isolation(as_root, 64 << 20) + [
        "--dir", WORK, "--dir", OUT, "--bind", str(jobs), JOBS_IN,
        "--ro-bind", str(RUNNER), RUNNER_IN, "--ro-bind", str(FORKSERVER), FORKSERVER_IN]
    return args + _python(as_root, FORKSERVER_IN, "/grading") + list(modules)


class Cgroup:
    """A memory and process-count cgroup for one run, if this machine lets the grader make one."""

    def __init__(self, limits: Limits):
        self.dirs: list[Path] = []
        self.v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        name = f"tlgrader-{uuid.uuid4().hex[:12]}"
        try:
            if self.v2:
                self._make(Path("/sys/fs/cgroup") / name, {"memory.max": limits.memory_bytes,
                                                           "memory.swap.max": 0,
                                                           "pids.max": limits.processes})
            else:
                self._make(Path("/sys/fs/cgroup/memory") / name,
                           {"memory.limit_in_bytes": limits.memory_bytes})
                with contextlib.suppress(OSError):  # the pids controller is optional
                    self._make(Path("/sys/fs/cgroup/pids") / name, {"pids.max": limits.processes})
        except OSError:
            self.remove()
            self.dirs = []

    def _make(self, folder: Path, settings: dict) -> None:
        folder.mkdir()
        self.dirs.append(folder)
        for key, value in settings.items():
            if (folder / key).exists():
                (folder / key).write_text(str(value))

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def add(self, pid: int) -> None:
        """Move process `pid` (0: the calling process) into the cgroups; its children follow."""
        for folder in self.dirs:
            fd = os.open(folder / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process for going over the memory limit."""
        for folder in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (folder / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
        return False

    def kill_all(self) -> None:
        """SIGKILL every process still in the cgroups (a forked child that outlived the run)."""
        for folder in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        for folder in self.dirs:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(0.02)


def rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    """(resource name, soft, hard) of every rlimit a sandboxed run gets."""
    return [("RLIMIT_CPU", limits.cpu_s, limits.cpu_s + 5),
            ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
            ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
            ("RLIMIT_NPROC", limits.processes, limits.processes),
            ("RLIMIT_CORE", 0, 0)]


def _preexec(limits: Limits, cgroup: Cgroup):
    """What the child does before exec'ing bwrap: join the cgroup, set the rlimits (inherited
    through bwrap and setpriv by the student's Python)."""
    def apply():
        if cgroup.active:
            cgroup.add(0)
        for name, soft, hard in rlimits(limits):
            resource.setrlimit(getattr(resource, name), (soft, hard))
    return apply


def _tail(path: Path, size: int = 4000) -> str:
    """The last `size` bytes of a file, as text."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read().decode("utf-8", "replace")


def give_to_sandbox(path: Path) -> None:
    """Make `path` the sandbox user's, when the grader runs as root (else it already is)."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)


def prepare(folder: Path) -> tuple[Path, Path]:
    """Make the run's work and output folders inside `folder`, writable by the sandbox's uid."""
    work, out = folder / "work", folder / "out"
    for path in (work, out):
        path.mkdir(parents=True, exist_ok=True)
        give_to_sandbox(path)
    return work, out


def run(folder: Path, program: bytes, limits: Limits) -> Result:
    """Run the runner in a fresh (cold) sandbox on `folder`'s work/ and out/ (see `prepare`),
    feeding it `program` on stdin; the output goes to `folder`/output.txt (outside the sandbox)."""
    work, out = folder / "work", folder / "out"
    cgroup = Cgroup(limits)
    start = time.monotonic()
    try:
        with open(folder / "output.txt", "wb") as sink:
            proc = subprocess.Popen(command(work, out, disk_bytes=limits.disk_bytes), stdin=subprocess.PIPE,
                                    stdout=sink, stderr=subprocess.STDOUT,
                                    preexec_fn=_preexec(limits, cgroup), start_new_session=True)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(program)
                proc.stdin.close()

            def wait(seconds: float | None) -> int | None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return proc.wait(timeout=seconds)
                return None

            def kill() -> None:  # the whole process group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return watch(wait, kill, folder, limits, cgroup, start)
    finally:
        cgroup.kill_all()
        cgroup.remove()


def watch(wait, kill, folder: Path, limits: Limits, cgroup: Cgroup, start: float, every_s: float = 0.2) -> Result:
    """Wait for a run (`wait(seconds)`: its exit status, or None while it runs), stopping it
    (`kill()`) when it passes the wall-clock limit or writes more than `disk_bytes` into its
    output directory; how it ended, its output read from `folder`/output.txt."""
    out = folder / "out"
    while True:
        code = wait(every_s)
        if code is not None:  # a last burst may have been written between two looks
            timed_out, disk_exceeded = False, _over(out, limits.disk_bytes)
            break
        timed_out = time.monotonic() - start > limits.wall_s
        disk_exceeded = not timed_out and _over(out, limits.disk_bytes)
        if timed_out or disk_exceeded:
            kill()
            cgroup.kill_all()
            code = wait(None)
            break
    output = folder / "output.txt"
    return Result(code, timed_out, cgroup.oom_killed(), time.monotonic() - start, _tail(output),
                  output.stat().st_size, disk_exceeded)


def _over(folder: Path, max_bytes: int, max_files: int = MAX_OUT_FILES) -> bool:
    """Whether the files under `folder` hold more than `max_bytes` or number more than
    `max_files` (files that vanish meanwhile count as empty)."""
    total, count = 0, 0
    for root, _, files in os.walk(folder):
        for name in files:
            count += 1
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
            if total > max_bytes or count > max_files:
                return True
    return False
