"""The warm sandbox's fork server: it runs *inside* a bubblewrap sandbox, imports an assignment's
modules once (torch alone takes seconds), then forks one fresh, isolated child per submission.

Like runner.py, this file is bound read-only into the sandbox on its own and imports only the
standard library (and, once, the modules it was asked to preload). It never runs student code
itself and never reads a submission: a forked child does, after it has cut itself off.

Per submission (the host sends `{"job": name, ...}` as one JSON line on stdin):
  server  forks C and reports `{"forked": pid}`; the host puts C into the submission's cgroup
          and answers `{"go": true}`; the server waits for C and reports `{"status": code}`
          (an exit status, or 128 + the signal, as bwrap reports it).
  C       unshares user, mount, PID, IPC, network and UTS namespaces (uid 65534 maps to itself);
          mounts a private tmpfs on the work directory, /tmp and /dev/shm; copies the
          submission into the work directory; binds the job's output folder; reads the program;
          then hides the jobs folder under an empty read-only tmpfs; forks G and waits for it.
  G       is PID 1 of the new PID namespace (when it ends, the kernel kills every process left
          in it) and dies with C (PR_SET_PDEATHSIG). It drops every capability, forks R and reaps.
  R       has no capabilities and no way back to the jobs folder (the mounts it would have to
          undo are locked in any namespace it can create); it takes the rlimits, writes its
          output into the job's output.txt, and runs the runner's program.
The server and C are not dumpable, so R cannot ptrace them or read their /proc files; they are
outside R's PID namespace, so it cannot signal them either.
"""
import ctypes
import importlib
import importlib.util
import json
import os
import re
import resource
import select
import shutil
import signal
import sys

JOBS, WORK, OUT, RUNNER = "/grading/jobs", "/grading/work", "/grading/out", "/grading/runner.py"
NEWNS, NEWUTS, NEWIPC = 0x00020000, 0x04000000, 0x08000000
NEWUSER, NEWPID, NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
CAP_VERSION_3 = 0x20080522

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target: str, fstype, flags: int, data: str | None = None) -> None:
    encode = (lambda s: None if s is None else s.encode())
    _check(libc.mount(encode(source), target.encode(), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def _prctl(option: int, value: int) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def unshare_namespaces() -> None:
    """New user (mapping our own uid and gid to themselves), mount, PID, IPC, network and UTS
    namespaces; the caller keeps every capability inside them until `drop_capabilities`."""
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(NEWUSER | NEWNS | NEWPID | NEWIPC | NEWNET | NEWUTS), "unshare")
    _prctl(PR_SET_DUMPABLE, 1)  # for a moment: /proc/self's files are ours only while dumpable
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _prctl(PR_SET_DUMPABLE, 0)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def drop_capabilities() -> None:
    """No capability left, none to regain by exec: the bounding set emptied, then capset to zero."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable, for two 32-bit words
    _check(libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def private_tmpfs(target: str, size: int) -> None:
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")


def mounts_below(folder: str) -> list[str]:
    """The outermost mount points below `folder` in this mount namespace (/proc/self/mountinfo's
    fifth field, octal escapes undone)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(folder + "/") and not any(point.startswith(p + "/") for p in points):
                points.append(point)
    return points


def private_tmp(disk_bytes: int) -> None:
    """A fresh tmpfs on /tmp that still shows what the server's /tmp had mounted below it (a
    Python environment or course that lives under /tmp): each such mount is bound aside onto a
    scratch tmpfs, the new /tmp goes on, and the mount is bound back to its place in it."""
    carried = mounts_below("/tmp")
    private_tmpfs(WORK, 1 << 20)  # the scratch, replaced by the work folder's own tmpfs below
    for i, point in enumerate(carried):
        os.mkdir(f"{WORK}/{i}")
        _mount(point, f"{WORK}/{i}", None, MS_BIND | MS_REC)
    private_tmpfs("/tmp", disk_bytes)
    for i, point in enumerate(carried):
        os.makedirs(point, exist_ok=True)
        _mount(f"{WORK}/{i}", point, None, MS_BIND | MS_REC)
    _check(libc.umount2(WORK.encode(), MNT_DETACH), "umount scratch")


def prepare_job(job: str, disk_bytes: int) -> tuple[dict, int]:
    """C's set-up, in its new namespaces: private tmpfs folders, the submission copied in, the
    output folder bound, the program read, the jobs folder hidden; (program, output.txt's fd)."""
    folder = os.path.join(JOBS, job)
    private_tmp(disk_bytes)
    for target in (WORK, "/dev/shm"):
        private_tmpfs(target, disk_bytes)
    for name in os.listdir(os.path.join(folder, "work")):
        shutil.copyfile(os.path.join(folder, "work", name), os.path.join(WORK, name), follow_symlinks=False)
    _mount(os.path.join(folder, "out"), OUT, None, MS_BIND)
    with open(os.path.join(folder, "program.json"), "rb") as f:
        program = json.loads(f.read())
    output = os.open(os.path.join(folder, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    _mount("tmpfs", JOBS, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
    return program, output


def run_student(program: dict, output: int, rlimits: list, runner) -> None:
    """R: output to output.txt, no other file descriptor, the rlimits, then the program."""
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    for name, soft, hard in rlimits:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    _prctl(PR_SET_DUMPABLE, 1)  # as a freshly started process is (RLIMIT_CORE stays 0)
    os.chdir(WORK)
    sys.argv = [RUNNER]
    os._exit(runner.run(program))


def init(program: dict, output: int, rlimits: list, runner, alive: int) -> None:
    """G, PID 1 of the submission's namespace: dies with C, drops capabilities, forks R, reaps
    every orphan, and ends with R's status (which ends everything else in the namespace)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([alive], [], [], 0)[0]:  # C already gone (end of file on its pipe)
        os._exit(137)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 ignores what it does not handle
    drop_capabilities()
    student = os.fork()
    if student == 0:
        os.close(alive)
        run_student(program, output, rlimits, runner)
    os.close(output)
    while True:
        pid, status = os.wait()
        if pid == student:
            os._exit(exit_code(status))


def exit_code(status: int) -> int:
    """A wait status as bwrap reports it: the exit code, or 128 + the signal."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def child(request: dict, go: int, runner) -> None:
    """C: wait for the host's go-ahead (it has put this process into the submission's cgroup),
    isolate, set up the job, then run G and end with its status."""
    if os.read(go, 1) != b"1":
        os._exit(1)
    os.close(go)
    try:
        unshare_namespaces()
        program, output = prepare_job(request["job"], int(request["disk_bytes"]))
    except Exception as exc:  # noqa: BLE001 (reported in the log, the run counts as failed set-up)
        print(f"forkserver: set-up failed: {exc!r}", file=sys.stderr, flush=True)
        os._exit(125)
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        init(program, output, request["rlimits"], runner, alive_r)
    os.close(alive_r)
    os.close(output)
    os._exit(exit_code(os.waitpid(pid, 0)[1]))


def self_test() -> str:
    """'' when a forked child can isolate itself as `child` will, else why not."""
    pid = os.fork()
    if pid == 0:
        try:
            unshare_namespaces()
            private_tmpfs("/tmp", 1 << 20)
            drop_capabilities()
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"forkserver: self-test failed: {exc!r}\n".encode())
            os._exit(1)
    status = os.waitpid(pid, 0)[1]
    return "" if status == 0 else f"namespaces are not available here (status {exit_code(status)}; see the log)"


class Channel:
    """JSON lines with the host, on descriptors that no child keeps."""

    def __init__(self):
        self.inp, self.out = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        self.buffer = b""

    def send(self, message: dict) -> None:
        os.write(self.out, json.dumps(message).encode() + b"\n")

    def receive(self) -> dict | None:
        while b"\n" not in self.buffer:
            data = os.read(self.inp, 65536)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def preload(modules: list[str]) -> list[str]:
    """Import the assignment's modules; those that fail are left for the notebook to meet."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            failed.append(name)
    return failed


def load_runner():
    spec = importlib.util.spec_from_file_location("runner", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def serve() -> None:
    channel = Channel()
    _prctl(PR_SET_DUMPABLE, 0)
    runner = load_runner()
    failed = preload(sys.argv[1:])
    threads = len(os.listdir("/proc/self/task"))
    problem = self_test() or (f"{threads} threads after the imports: forking would be unsafe" if threads > 1 else "")
    channel.send({"ready": not problem, "problem": problem, "failed_imports": failed})
    while (request := channel.receive()) is not None:
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(channel.inp)
            os.close(channel.out)
            child(request, go_r, runner)
        os.close(go_r)
        channel.send({"forked": pid})
        answer = channel.receive()
        os.write(go_w, b"1" if answer and answer.get("go") else b"0")
        os.close(go_w)
        channel.send({"status": exit_code(os.waitpid(pid, 0)[1])})


if __name__ == "__main__":
    serve()
