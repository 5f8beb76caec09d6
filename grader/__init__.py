"""The course's grader: student notebooks run in a bubblewrap sandbox, grades decided outside it.

`python -m grader autograde psN_name` grades submitted/<student>/psN_name/ (nbgrader's layout):
each submission runs in its own sandbox (grader.sandbox, grader.runner), which exports plain data
only; a trusted checker decides each test (grader.checker) following the probe/check authoring
convention (grader.convention); a coordinator (grader.coordinator) is the single writer of
results (grader.jobs), runs the jobs on dask.distributed (grader.engine), and writes scores into
nbgrader's gradebook (grader.gradebook) and feedback pages (grader.report). Student kernels never
import this package: it is not visible inside the sandbox.
"""
