"""Start JupyterLab / Voila servers and Debian's Chromium for browser tests and the latency bench.

Shared by tests/browser/conftest.py and bench/slider_latency.py: one implementation of
"a real server on a free loopback port with a token, stopped at the end".
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 1000}
# The user settings of every test server: running a solution notebook must not autosave its
# outputs into the repository, and no news pop-up should sit over the page. Kept in a temporary
# directory, so neither this machine's JupyterLab settings nor its saved workspaces leak in.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
START_TIMEOUT_S = 60  # /api/status answers after ~3 s on an idle machine; CI may be far busier


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process (and its process group) listening on 127.0.0.1:port."""

    process: subprocess.Popen
    port: int
    token: str
    log_path: Path
    state_dir: Path | None = None  # temporary user settings, removed by stop()
    base_url: str = field(init=False)

    def __post_init__(self):
        self.base_url = f"http://127.0.0.1:{self.port}"

    def url(self, path: str, **query: str) -> str:
        """`reset=""` gives `?reset`; the token is added when the server has one."""
        if self.token:
            query["token"] = self.token
        params = "&".join(f"{k}={v}" if v else k for k, v in query.items())
        return f"{self.base_url}/{path.lstrip('/')}" + (f"?{params}" if params else "")

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, ready_path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url(ready_path), timeout=2).close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{self.log()}")

    def delete_sessions(self) -> None:
        """Shut down every kernel the tests opened, so the next test starts from a quiet machine."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM lets jupyter_server shut its kernels down (they run in their own sessions,
            # so killing only our process group would leave them behind).
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _lab_state_dir() -> Path:
    state_dir = Path(tempfile.mkdtemp(prefix="ppo-lab-browser-"))
    for relative, settings in LAB_SETTINGS.items():
        path = state_dir / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return state_dir


def _start(command: list[str], port: int, token: str, log_path: Path, lab_state: bool = True) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env, state_dir = dict(os.environ), None
    if lab_state:
        state_dir = _lab_state_dir()
        env["JUPYTERLAB_SETTINGS_DIR"] = str(state_dir / "settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(state_dir / "workspaces")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() reaches make's children too
        )
    return Server(process, port, token, log_path, state_dir)


def _as_root_flags() -> list[str]:
    return ["--allow-root"] if os.geteuid() == 0 else []


def start_lab(root_dir: Path = REPO, log_name: str = "jupyterlab.log") -> Server:
    """JupyterLab as `make lab` runs it, on a free port with a fresh token, no file opened.

    `expose_app_in_browser` gives the tests `window.jupyterapp`, to read outputs from the notebook
    model: in the DOM an error and a warning are both rendered as application/vnd.jupyter.stderr.
    """
    port, token = free_port(), secrets.token_hex(16)
    command = [
        str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True", *_as_root_flags(),
    ]
    server = _start(command, port, token, ARTIFACTS / log_name)
    server.wait_ready("api/status")
    return server


def start_make_lab() -> Server:
    """`make lab` itself, with only the port and the token overridden (and loopback made explicit)."""
    port, token = free_port(), secrets.token_hex(16)
    lab_args = "--ServerApp.ip=127.0.0.1 --ServerApp.port_retries=0"
    command = ["make", "--no-print-directory", "lab", f"PORT={port}", f"TOKEN={token}", f"LAB_ARGS={lab_args}"]
    server = _start(command, port, token, ARTIFACTS / "make-lab.log")
    server.wait_ready("api/status")
    return server


def start_voila(notebook: Path) -> Server:
    """Voila as `make explore` runs it, on a free port. Voila needs no token on loopback."""
    port = free_port()
    command = [
        str(VENV_BIN / "voila"), str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
    ]
    server = _start(command, port, "", ARTIFACTS / "voila.log", lab_state=False)
    server.wait_ready("")
    return server


def launch_chromium(playwright):
    """Debian's Chromium, headless. Never a browser downloaded by playwright."""
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: `make test` installs it (`make chromium`, apt-get install chromium)."
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
