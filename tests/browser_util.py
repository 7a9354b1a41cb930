"""Helpers for tests that drive a real browser: a throwaway JupyterLab server and Debian's
Chromium through Playwright (see /work/shared/TOOLING-NOTES.md, "In a real browser").

    with jupyterlab(root) as lab:          # lab.url(path) -> URL with the token
        with chromium() as browser:
            page = browser.new_page()
            page.goto(lab.url("lab/tree/x.ipynb"))
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def browser_unavailable_reason() -> str | None:
    """None when a browser test can run here, else why not."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    for mod in ("playwright", "jupyterlab", "ipywidgets"):
        try:
            __import__(mod)
        except ImportError:
            return f"python package {mod} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str, root: Path, log: Path):
        self.port, self.token, self.root, self.log = port, token, root, log

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path}{sep}token={self.token}"


@contextlib.contextmanager
def jupyterlab(root, timeout: float = 60.0, threads: int = 1, windowing_mode: str = "none"):
    """JupyterLab on 127.0.0.1 serving a folder; settings, workspaces and runtime files go to
    a temporary folder, so nothing of the user's setup leaks in. Stopped on exit.

    ``windowing_mode`` is the notebook's "windowingMode" setting. JupyterLab 4's default,
    "contentVisibility", leaves cells outside the viewport unrendered, and Playwright then finds a
    widget far down a long chapter "not visible" and cannot scroll to it (CI saw this on chapter 13);
    "none" attaches every cell, as a reader scrolling the whole chapter would see it."""
    root = Path(root)
    port, token = _free_port(), secrets.token_hex(16)
    tmp = Path(tempfile.mkdtemp(prefix="jlab-"))
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": windowing_mode}), encoding="utf-8")
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        OMP_NUM_THREADS=str(threads),
    )
    log = tmp / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        "--ServerApp.port_retries=0",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(port, token, root, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(lab.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, through Playwright's sync API, with a new empty profile
    (Playwright takes the profile as launch_persistent_context's user_data_dir, not as
    --user-data-dir). Yields a BrowserContext: ``ctx.new_page()``."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1300, "height": 1000},
            )
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
