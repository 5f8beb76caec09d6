"""Each chapter is executed once per test run: by nbval, whose run the book is then built from.

nbval runs every chapter in a fresh kernel and checks its cells (`make test`, first pytest run).
The outputs it collects make an executed notebook; these hooks store it in the book's execution
cache (jupyter-cache, `_build/.jupyter_cache`), keyed as myst-nb keys it, on the code of the
notebook. `jupyter-book build` (tests/test_book_build.py, the second pytest run) then finds every
chapter in the cache and renders it without executing it again. A chapter with a failing cell
is not stored: the build executes it itself, and fails on it too. (myst-nb writes the notebook it
read, not the cached outputs, to _build/jupyter_execute when it uses the cache: read executed
outputs from the cache, never from there.)
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from nbval.plugin import IPyNbCell

CACHE = Path(__file__).resolve().parents[1] / "_build" / ".jupyter_cache"  # JB1's default
_executed: dict[Path, dict] = {}   # chapter -> {"notebook", "cells run", "failed"}
RAISES = "raises-exception"


def _raised_nothing(item) -> bool:
    """A cell tagged raises-exception demonstrates a crash: nbval allows it to raise, and here it
    must, or the chapter no longer shows what its prose says."""
    return (RAISES in item.cell.metadata.get("tags", [])
            and not any(out.output_type == "error" for out in item.test_outputs or []))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """After each cell nbval ran: fail a raises-exception cell that raised nothing, and keep the
    cell's outputs in the notebook nbval read (once compared)."""
    report = yield
    if isinstance(item, IPyNbCell) and report.when == "call":
        if report.passed and _raised_nothing(item):
            report.outcome = "failed"
            report.longrepr = f"{item.name}: tagged {RAISES}, but the cell raised nothing"
        run = _executed.setdefault(Path(item.parent.path), {"notebook": item.parent.nb,
                                                            "cells run": 0, "failed": False})
        run["failed"] |= report.failed or report.skipped
        if not report.failed and not report.skipped:
            item.cell.outputs = item.test_outputs
            run["cells run"] += 1
            item.cell.execution_count = run["cells run"]
    return report


def pytest_sessionfinish(session):
    """Store every chapter whose code cells all ran and passed in the book's execution cache."""
    complete = {path: run["notebook"] for path, run in _executed.items() if not run["failed"]
                and run["cells run"] == sum(c.cell_type == "code" for c in run["notebook"].cells)}
    if not complete:
        return
    cache = get_cache(CACHE)
    for path, notebook in complete.items():
        nbformat.validate(notebook)
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path)), check_validity=False,
                                    overwrite=True)
