"""Browser tests: the real server (``giaitrinh serve``) on a demo database, driven in Debian's chromium.

Playwright (the PyPI package) drives ``/usr/bin/chromium``; no test tool ever downloads a browser.
``make test`` installs chromium (``make tools``) and bpmn-js (``npm ci``). Without them the
tests are skipped on a developer's machine and fail in CI (CI=true).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from giaitrinh.config import PROJECT_ROOT

from ..components import missing

CHROMIUM = "/usr/bin/chromium"
# The flags this machine's closed network needs (no background connections to Google's hosts).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLI = str(Path(sys.executable).parent / "giaitrinh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, env: dict, process: subprocess.Popen, log: Path):
        self.url, self.env, self.process, self.log = url, env, process, log

    def cli(self, *args: str) -> str:
        """Run a ``giaitrinh`` command against the server's database."""
        done = subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """``giaitrinh serve`` with the dev clock on a fresh, migrated SQLite database holding the demo."""
    if not (PROJECT_ROOT / "node_modules" / "bpmn-js" / "dist").is_dir():
        missing("bpmn-js is not installed (run `make assets`)")
    home = tmp_path_factory.mktemp("live")
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{home / 'giaitrinh.db'}", GIAITRINH_INSTANCE=str(home),
               GIAITRINH_DEV_CLOCK="1", GIAITRINH_RATE_LIMITS="off", GIAITRINH_SECRET_KEY="browser-tests")
    for step in (["db", "upgrade"], ["seed-demo"]):
        done = subprocess.run([CLI, *step], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
    server = LiveServer(url, env, process, log)
    yield server
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        missing(f"{CHROMIUM} is not installed (run `make tools`: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (run `make venv`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) whose console errors and CSP violations fail the test."""
    context = browser.new_context(base_url=live_server.url, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems: list[str] = []
    # An answer's status (a 422 for a bad form, say) is the test's to check; script errors and
    # CSP refusals ("Refused to ...") are never expected.
    tab.on("console", lambda msg: problems.append(msg.text)
           if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    yield tab
    context.close()
    assert not problems, f"the page reported errors: {problems}"


def sign_in(page, username: str, password: str = "demo") -> None:
    page.goto("/dang-nhap")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("main form button.primary")
