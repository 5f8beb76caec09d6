"""The book builds with zero warnings, every notebook executes, every page of _toc.yml exists,
and the chapters store outputs only where nbval compares them.

`jupyter-book build` exits 0 even when a notebook raises; -W turns execution failures into a
non-zero exit, and the log and the execution reports are checked as well.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from book_helpers import ROOT, built_book, reader_text, solution_markers, toc_files
from store_outputs import CHECK_TAG, is_checked

pytestmark = [pytest.mark.slow, pytest.mark.book]

TEXT_SUFFIXES = {".html", ".js", ".txt", ".ipynb", ".md", ".json"}
# Sphinx and docutils report as "[path:line: ]WARNING: message". Kernels started for execution
# log "[IPKernelApp] WARNING | Kernel is running over TCP without encryption" (ipykernel 7) to
# the same stream: that is about the local kernel transport, not about the book, so not matched.
BUILD_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")


CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))


@pytest.fixture(scope="module")
def build():
    return built_book()


def test_book_builds_without_warnings(build):
    noisy = [line for line in build.output.splitlines() if BUILD_PROBLEM.search(line)]
    assert not noisy, "\n".join(noisy)
    assert build.returncode == 0, build.output[-5000:]


def test_every_notebook_executes_without_error(build):
    failed = [line for line in build.output.splitlines() if "Executing notebook failed" in line]
    assert not failed, "\n".join(failed)
    reports = sorted((build.html / "reports").rglob("*.err.log"))
    assert not reports, "\n\n".join(f"{p}:\n{p.read_text()[-3000:]}" for p in reports)


@pytest.mark.parametrize("page", toc_files())
def test_every_toc_page_is_built(build, page):
    assert (build.html / f"{page}.html").is_file()


def test_no_solution_or_hidden_test_reaches_the_book(build):
    """Neither a page nor a downloadable source (_sources/) carries nbgrader's solution markers."""
    leaks = []
    for path in build.html.rglob("*"):
        if path.suffix in TEXT_SUFFIXES and "mathjax" not in path.relative_to(build.html).parts[:2]:
            leaks += [f"{path}: {m}" for m in solution_markers(reader_text(path))]
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_only_output_checked_cells_store_outputs(chapter):
    """nbval compares the cells tagged `nbval-check-output` with the outputs stored in the
    notebook (tests/store_outputs.py writes them); every other cell is stored without outputs."""
    notebook = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", 4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    stray = [cell.id for cell in code if cell.outputs and not is_checked(cell)]
    empty = [cell.id for cell in code if is_checked(cell) and not cell.outputs]
    noisy = [cell.id for cell in code if is_checked(cell) and any(
        out.output_type == "error" or out.get("name") == "stderr" for out in cell.outputs)]
    assert not stray, f"{chapter}: outputs stored in cells not tagged {CHECK_TAG}: {stray}"
    assert not empty, f"{chapter}: cells tagged {CHECK_TAG} with no stored output: {empty}"
    assert not noisy, f"{chapter}: checked cells that store an error or stderr: {noisy}"
