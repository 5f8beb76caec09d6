"""Where the jobs run: dask.distributed, an embedded LocalCluster or an existing cluster.

Workers are processes with one thread each: a worker grades one submission at a time (the
sandbox is a child process; the checks run in the worker itself, which keeps NumPy, PyTorch and
each assignment's setup loaded between submissions). With `--scheduler tcp://host:8786` the same
jobs go to an existing cluster (`dask scheduler` + `dask worker`, dask-jobqueue, dask-kubernetes);
its workers need this course's environment and the `grader` package importable (start them from
the course folder, or with it on PYTHONPATH) and bubblewrap installed.
"""
from __future__ import annotations

import contextlib
import os

from distributed import Client, LocalCluster


def default_workers() -> int:
    """One worker per free pair of cores: a sandboxed notebook keeps about one core busy and its
    checks another share; at least one worker."""
    cores = len(os.sched_getaffinity(0))
    free = cores - int(os.getloadavg()[0])
    return max(1, min(cores, free) // 2)


@contextlib.contextmanager
def client(workers: int | None = None, scheduler: str | None = None):
    """A dask Client: connected to `scheduler`, or to a LocalCluster of `workers` processes."""
    if scheduler:
        with Client(scheduler, timeout="30s") as c:
            yield c
        return
    n = workers or default_workers()
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=0, silence_logs=40) as cluster, Client(cluster) as c:
        yield c
