"""Store the expected outputs of a chapter's output-checked cells (a maintainer's tool).

`pytest --nbval-lax` runs every cell of every chapter, and compares a cell's output with the one
stored in the notebook only where the cell is tagged `nbval-check-output`: cells whose output is
exact on any machine (shapes, parameter counts, parameter groups, error-free repairs), never
trained accuracies. The committed notebooks carry those outputs and no others. After changing a
checked cell, or tagging a new one, re-execute its chapter and store what it prints:

    .venv/bin/python tests/store_outputs.py book/03_freezing.ipynb [more chapters]
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHECK_TAG = "nbval-check-output"


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", [])


def kept_outputs(cell) -> list:
    """A checked cell's outputs minus stderr (warnings and progress bars are not the result)."""
    return [out for out in cell.outputs if not (out.output_type == "stream" and out.name == "stderr")]


def store_outputs(path: Path) -> int:
    """Execute the notebook at `path` from its folder; write back the outputs of its checked
    cells, clear every other cell's; return how many cells are checked."""
    notebook = nbformat.read(path, as_version=4)
    executed = nbformat.read(path, as_version=4)
    NotebookClient(executed, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(stderr=subprocess.DEVNULL)
    checked = 0
    for cell, ran in zip(notebook.cells, executed.cells):
        if cell.cell_type != "code":
            continue
        if is_checked(cell):   # nbval reads a stored output without an execution count as unrun
            cell.execution_count, cell.outputs = ran.execution_count, kept_outputs(ran)
        else:
            cell.execution_count, cell.outputs = None, []
        checked += is_checked(cell)
    nbformat.write(notebook, path)
    return checked


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", type=Path, nargs="+")
    for path in parser.parse_args(argv).notebooks:
        print(f"{path}: stored the outputs of {store_outputs(path)} checked cells")


if __name__ == "__main__":
    main()
