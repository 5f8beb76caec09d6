"""Shared helpers for the book's tests: the pages _toc.yml lists, and one book build per session.

The build and browser tests both need the built HTML; building takes a while, so the first caller
builds it and later callers reuse the result (`built_book` is cached for the whole process).
"""
from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
MATHJAX = ROOT / "_mathjax" / "_static" / "mathjax" / "tex-chtml.js"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Sphinx colours its log even into a pipe
# nbgrader's markers as they stand in a cell: alone on their line. Prose that names them (the
# instructor guide does) has other words on the line and is not a leak.
SOLUTION_MARKER_LINE = re.compile(
    r"^[ \t]*(### BEGIN SOLUTION|### END SOLUTION|### BEGIN HIDDEN TESTS)[ \t]*$", re.MULTILINE)
HTML_TAG = re.compile(r"<[^>]+>")


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every document _toc.yml lists (root first), as paths without suffix, e.g. 'book/02_loss'."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    files = [data["root"]]
    for part in data.get("parts", []):
        files.extend(_entries(part.get("chapters", [])))
    return files


def _entries(entries: list[dict]) -> list[str]:
    """Files of a list of toc entries and of their sections, depth first."""
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        files.extend(_entries(entry.get("sections", [])))
    return files


@dataclass(frozen=True)
class Build:
    """The outcome of one `jupyter-book build`: its exit status, its log (uncoloured), the HTML."""

    returncode: int
    output: str
    html: Path


@functools.cache
def built_book() -> Build:
    """Build the book once per test session, exactly as `make book` does but from scratch (--all).

    It builds into the real _build so a maintainer can open what the tests checked. Execution is
    cached by jupyter-cache (keyed on the code of each notebook); the nbval tests over book/ run
    every chapter in a fresh kernel, so a stale cache cannot hide a broken chapter.
    """
    if not MATHJAX.is_file():
        raise FileNotFoundError(f"{MATHJAX} is missing: run `make book` (it copies MathJax) first")
    shutil.rmtree(HTML / "reports", ignore_errors=True)  # tracebacks of failed runs; never cleaned
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", "--all", "-W", "-n", "--keep-going", str(ROOT)],
        cwd=ROOT, capture_output=True, text=True,  # pytest-timeout (pyproject.toml) bounds it
    )
    return Build(proc.returncode, ANSI_ESCAPE.sub("", proc.stdout + proc.stderr), HTML)


def solution_markers(text: str) -> list[str]:
    """The nbgrader solution and hidden-test markers that stand alone on a line of text."""
    return SOLUTION_MARKER_LINE.findall(text)


def reader_text(path: Path) -> str:
    """What a reader gets from a built file: a notebook's cell sources, a page's text without
    its tags (code lines keep their line breaks), or any other file as it is."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(raw)["cells"])
    if path.suffix == ".html":
        return html.unescape(HTML_TAG.sub("", raw))
    return raw
