"""What the tests share: fixtures any test file may use (`bn_statistics`, `record_calls`), and
how `make test` shares the suite between its pytest-xdist processes.

The suite's cost is in a few large units: one assignment's grading (a course directory, set up
once per process that needs it) and one chapter's execution (a kernel, under nbval). Each unit
must run in one process, and the largest should start first, so that no process is left with a
long unit while the other has finished. `make test` runs `pytest -n 2 --dist loadscope`:
  - `pytest_xdist_make_scheduler` makes xdist's loadscope scheduler group the items by unit
    (`unit_of`): an assignment's tests, a notebook's cells, or one test file;
  - `pytest_collection_modifyitems` puts the units in order of expected cost: an assignment's
    grading by its number of submissions times its per-cell timeout (a proxy for the time one
    submission takes), then the chapters, then the unit-test files.
"""
from __future__ import annotations

import re

import pytest
import torch

import tlutils
from grading import bundles, cell_timeout, wrong_answers

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def bn_statistics():
    """A function giving copies of a model's BatchNorm running statistics (mean, variance and
    batch count of every layer), to compare before and after."""
    def copy(model: torch.nn.Module) -> list[torch.Tensor]:
        return [t.clone() for m in tlutils.batch_norm_layers(model)
                for t in (m.running_mean, m.running_var, m.num_batches_tracked)]
    return copy


@pytest.fixture
def record_calls(monkeypatch):
    """`record_calls(owner, name, what)` replaces `owner.name` for the test with a wrapper that
    appends `what(*args, **kwargs)` to a list, then calls the original; it returns the list.
    `what` sees the arguments as they are at the call, before the call changes them."""
    def wrap(owner, name: str, what) -> list:
        calls, real = [], getattr(owner, name)

        def recording(*args, **kwargs):
            calls.append(what(*args, **kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)
        return calls
    return wrap


# --- scheduling ----------------------------------------------------------------------------------

ASSIGNMENT_PARAM = re.compile(r"\[(ps\d+_\w+)\]$")


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, and for a test parametrized by an
    assignment, that assignment."""
    path, _, name = nodeid.partition("::")
    assignment = ASSIGNMENT_PARAM.search(name)
    return f"{path}[{assignment[1]}]" if assignment else path


def expected_cost(unit: str) -> tuple[int, int]:
    """A sort key, most expensive first: (kind, -cost) with kind 0 for an assignment's grading,
    1 for a chapter, 2 for a test file. The sandboxed grader grades the wrong answers too
    (tests/test_grader_assignments.py); nbgrader's round trip, the solution and the release."""
    assignment = ASSIGNMENT_PARAM.search(unit)
    if assignment:
        name = assignment[1]
        submissions = 2 + (len(bundles(wrong_answers(name))) if "test_grader_assignments" in unit else 0)
        return 0, -submissions * cell_timeout(name)
    return (1, 0) if unit.endswith(".ipynb") else (2, 0)


def pytest_collection_modifyitems(items):
    """Most expensive units first; within a unit, the order pytest chose (a stable sort)."""
    items.sort(key=lambda item: expected_cost(unit_of(item.nodeid)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadscope`: xdist's scheduler, with `unit_of` as its scope and the
    collection's order kept."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False   # keep pytest_collection_modifyitems' order
    return LoadUnitScheduling(config, log)
