"""A chapter runs in a real JupyterLab server, the way a student runs it.

Starts `jupyter lab` on 127.0.0.1 with a random token, opens a kernel session for a chapter
through the REST API (as the JupyterLab front end does), executes its code cells over the kernel
websocket up to its first assertion cell, and checks that each one ran without error. What can
break in JupyterLab alone (the kernelspec, the kernel's working directory, the environment it
imports from) shows in those first cells; every cell of every chapter runs under nbval, once per
test run. The server is shut down even on failure.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket

from book_helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.book]

JUPYTER = Path(sys.executable).parent / "jupyter"
NOTEBOOK = "book/01_concepts.ipynb"
CELL_TIMEOUT = 300  # seconds, as the book's per-cell limit in _config.yml


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running `jupyter lab` server: its base URL and token, and REST calls against it."""

    def __init__(self, tmp: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "jupyterlab.log").open("w")
        self.process = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={ROOT}",
             "--allow-root"],  # containers and CI often run as root
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=isolated_env(tmp),
        )

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """One REST call with the token; raises on an HTTP error status."""
        response = requests.request(method, f"{self.url}/api/{path}", timeout=30,
                                    headers={"Authorization": f"token {self.token}"}, **kwargs)
        response.raise_for_status()
        return response

    def wait_until_up(self, timeout: float = 90) -> None:
        """Poll /api/status until the server answers; fail early if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"jupyter lab exited: {self.log_text()}"
            try:
                self.api("GET", "status")
                return
            except requests.RequestException:
                time.sleep(0.5)
        pytest.fail(f"jupyter lab did not answer in {timeout} s: {self.log_text()}")

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), kill it if it does not exit."""
        if self.process.poll() is None:
            try:
                self.api("POST", "shutdown")
                self.process.wait(timeout=30)
            except (requests.RequestException, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.close()

    def log_text(self) -> str:
        """The end of the server's log, for failure messages."""
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]


def isolated_env(tmp: Path) -> dict:
    """The environment, with Jupyter's runtime and config dirs private to this test."""
    env = dict(os.environ)
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    env["JUPYTER_CONFIG_DIR"] = str(tmp / "config")
    return env


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server rooted at the repo, up and answering; stopped however the test ends."""
    server = Lab(tmp_path)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def execute_request(code: str, session: str) -> dict:
    """A Jupyter messaging-protocol execute_request on the shell channel."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": session,
                   "username": "test", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }


def run_cell(ws: websocket.WebSocket, code: str, session: str) -> list[str]:
    """Execute one cell and wait for its execute_reply; return the errors it raised, if any.

    Requests go one at a time, so stop_on_error never drops a queued cell.
    """
    request = execute_request(code, session)
    ws.send(json.dumps(request))
    errors, deadline = [], time.monotonic() + CELL_TIMEOUT
    while time.monotonic() < deadline:
        message = json.loads(ws.recv())
        if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        if message["msg_type"] == "error":
            errors.append(f"{message['content']['ename']}: {message['content']['evalue']}")
        elif message["msg_type"] == "execute_reply":
            status = message["content"]["status"]
            return errors + ([] if status == "ok" or errors else [f"execute_reply {status}"])
    return errors + [f"no execute_reply within {CELL_TIMEOUT} s"]


def opening_cells(notebook: dict) -> list[dict]:
    """The notebook's code cells up to and including its first assertion cell (`remove-cell`)."""
    cells = []
    for cell in (c for c in notebook["cells"] if c["cell_type"] == "code"):
        cells.append(cell)
        if "remove-cell" in cell["metadata"].get("tags", []):
            break
    return cells


def test_chapter_runs_cell_by_cell_in_jupyterlab(lab):
    """Open the chapter as JupyterLab does (contents, session, kernel) and run its opening cells."""
    notebook = lab.api("GET", f"contents/{NOTEBOOK}").json()["content"]
    session = lab.api("POST", "sessions", json={
        "path": NOTEBOOK, "name": Path(NOTEBOOK).name, "type": "notebook",
        "kernel": {"name": notebook["metadata"]["kernelspec"]["name"]},
    }).json()
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.port}/api/kernels/{session['kernel']['id']}/channels"
        f"?token={lab.token}", timeout=CELL_TIMEOUT)
    try:
        code_cells = opening_cells(notebook)
        errors = {}
        for i, cell in enumerate(code_cells):
            cell_errors = run_cell(ws, cell["source"], session["id"])
            # cells tagged raises-exception show a bug on purpose (as in nbval and myst-nb)
            if cell_errors and "raises-exception" not in cell["metadata"].get("tags", []):
                errors[f"code cell {i}"] = cell_errors
    finally:
        ws.close()
        lab.api("DELETE", f"sessions/{session['id']}")
    assert code_cells, f"{NOTEBOOK} has no code cell"
    assert not errors, errors
