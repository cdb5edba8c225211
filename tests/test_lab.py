"""`make lab`: JupyterLab starts on notebooks/ and lists every notebook (its contents API).

The server is started by the Makefile's own ``lab`` target, headless, on a free port, with a
token, and stopped after the check. ``-o <stamp>`` tells make to treat the install stamp as
up to date, so the test never installs anything; ``VPY`` is this interpreter.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def test_the_default_install_includes_jupyterlab_and_the_lab_extra_exists():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("jupyterlab") for d in extras["lab"])
    assert "lab" in _makefile_variable("EXTRAS").split(",")  # `make setup` and `make lab` share one stamp
    dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "lab", "PORT=9999"], cwd=ROOT,
                         capture_output=True, text=True) if shutil.which("make") else None
    if dry is not None:
        assert dry.returncode == 0, dry.stderr
        assert "-m jupyterlab --ServerApp.root_dir=notebooks --port=9999 " in dry.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_the_notebooks(tmp_path):
    pytest.importorskip("jupyterlab")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "run"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    stamp = _makefile_variable("VENV") + "/.installed"
    command = ["make", "--no-print-directory", "-o", stamp, "lab", f"VPY={sys.executable}", f"PORT={port}",
               f"LAB_ARGS=--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/contents?content=1"
    listing = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    listing = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        # without the token, the server refuses
        if listing is not None:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=5)
            assert refused.value.code == 403
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
    assert listing is not None, ("JupyterLab did not answer within "
                                 f"{STARTUP_TIMEOUT_S} s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
    listed = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    assert listed == NOTEBOOKS
