"""The program that runs *inside* the sandbox: the student's notebook, then the probes.

This file is bound read-only into the sandbox on its own and run as `python -I runner.py`; it
imports nothing from the `grader` package (which is never visible in the sandbox), only the
standard library, and NumPy or PyTorch when the notebook already imported them.

It gets its whole program before any student code runs, so that the student can neither read nor
rewrite it as a file: from stdin in a cold sandbox, in memory from forkserver.py in a warm one
(which hides the job's files before the student's code starts). It executes the code cells in
order in one namespace, as a kernel would, each under a per-cell time limit (a timer signal; best
effort, because the student's code can block signals: the grader's wall-clock limit outside the
sandbox is the real bound). After a graded test cell it runs that cell's probe and writes the
probe's `probe` dict as plain data into the output folder: `probe.json` and `.npy` files (never a
pickle). Everything this process writes is untrusted: the checker outside validates it.
"""
import builtins
import json
import os
import signal
import sys
import traceback
import types

MAX_MESSAGE = 500


class CellTimeout(BaseException):
    """Raised in a cell that ran past its time limit (a BaseException, so that `except Exception`
    in the student's code does not swallow it)."""


def _on_alarm(signum, frame):
    raise CellTimeout()


def _short(exc: BaseException) -> str:
    """`Type: message`, capped, for the log and the probe's error."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_MESSAGE]


def _run(source: str, name: str, namespace: dict, seconds: float):
    """Execute `source` in `namespace` under a timer; None if it finished, else what stopped it."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        exec(compile(source, name, "exec"), namespace)
        return None
    except CellTimeout:
        return f"CellTimeout: the cell ran longer than {seconds:g} s"
    except SystemExit as exc:  # a kernel shows sys.exit as an error and goes on
        return _short(exc) if str(exc) else "SystemExit"
    except BaseException as exc:  # noqa: BLE001 (a student's error is data, not our failure)
        return _short(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class _Arrays:
    """Numbered .npy files written next to a probe.json."""

    def __init__(self, folder: str):
        self.folder, self.count = folder, 0

    def save(self, array) -> str:
        import numpy as np  # only reached when the probe holds an array, so NumPy is loaded
        array = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"arrays of dtype {array.dtype} are not plain data")
        name = f"a{self.count}.npy"
        self.count += 1
        with open(os.path.join(self.folder, name), "wb") as f:
            np.save(f, array, allow_pickle=False)
        return name


def encode(value, arrays: _Arrays, path: str = "probe"):
    """`value` as JSON-able data, arrays and tensors saved as .npy files. Tuples and dicts are
    tagged (`{"$tuple": [...]}`, `{"$dict": [[key, value], ...]}`) so that they come back as
    tuples and as dicts with their original keys; NumPy scalars become Python numbers."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return {"$tuple": [encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]}
    if kind is dict:
        return {"$dict": [[encode(k, arrays, f"{path} key"), encode(v, arrays, f"{path}[{k!r}]")]
                          for k, v in value.items()]}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if np is not None and isinstance(value, np.ndarray):
        return {"$ndarray": arrays.save(value)}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        return {"$tensor": arrays.save(tensor.numpy()), "dtype": str(tensor.dtype)}
    raise TypeError(f"{path} is a {kind.__name__}, not plain data (numbers, strings, lists, "
                    "tuples, dicts, NumPy arrays or tensors)")


def export(out_dir: str, grade_id: str, namespace: dict, error) -> None:
    """Write the probe's result for `grade_id`: its `probe` dict, or the error that stopped it."""
    folder = os.path.join(out_dir, grade_id)
    os.makedirs(folder, exist_ok=True)
    record = {"error": error}
    if error is None:
        try:
            if type(namespace.get("probe")) is not dict:
                raise TypeError("the probe did not set `probe` to a dict")
            record = {"value": encode(namespace["probe"], _Arrays(folder))}
        except Exception as exc:  # noqa: BLE001
            record = {"error": _short(exc)}
    with open(os.path.join(folder, "probe.json"), "w") as f:
        json.dump(record, f)


def main(program: dict) -> int:
    """Run `program`; the exit status is 0 when the end was reached."""
    out_dir, seconds = program["out_dir"], float(program["cell_timeout_s"])
    module = types.ModuleType("__main__")  # the notebook's globals, as in a kernel
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    namespace = module.__dict__
    log = open(os.path.join(out_dir, "log.jsonl"), "w", buffering=1)
    for index, cell in enumerate(program["cells"]):
        error = _run(cell["source"], f"<cell {index}>", namespace, seconds)
        log.write(json.dumps({"cell": index, "grade_id": cell.get("grade_id"), "error": error}) + "\n")
        if cell.get("probe") is not None:
            namespace.pop("probe", None)
            source = cell.get("shared", "") + "\n" + cell["probe"]
            probe_error = _run(source, f"<probe {cell['grade_id']}>", namespace, seconds)
            export(out_dir, cell["grade_id"], namespace, probe_error)
            namespace.pop("probe", None)
    log.write(json.dumps({"end": True}) + "\n")
    log.close()
    sys.stdout.flush()
    return 0


def run(program: dict) -> int:
    """`main`'s exit status; 3 when the runner itself failed (its traceback on stderr)."""
    try:
        return main(program)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 3


if __name__ == "__main__":
    # skip interpreter shutdown: a student's atexit hook or thread cannot hang it
    os._exit(run(json.loads(sys.stdin.read())))
