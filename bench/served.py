"""``giaitrinh serve`` as the HTTP and memory benchmarks run it: a real server process on
loopback with production settings, signed-in officials, and the resident size of its tree."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """One ``giaitrinh serve`` on a free loopback port, stopped (with its workers) on exit."""

    def __init__(self, database_url: str, workers: int = 2, threads: int = 8, scheduler: bool = True,
                 extra_env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.instance = tempfile.TemporaryDirectory(prefix="giaitrinh-serve-")
        self.log = open(Path(self.instance.name) / "serve.log", "w+")  # noqa: SIM115
        env = dict(os.environ, DATABASE_URL=database_url, GIAITRINH_ENV="production",
                   GIAITRINH_SECRET_KEY="bench-secret-key-not-for-real-use", GIAITRINH_RATE_LIMITS="off",
                   GIAITRINH_INSTANCE=self.instance.name, PYTHONPATH=str(ROOT))
        for key in ("GIAITRINH_DEV_CLOCK", "GIAITRINH_CLOCK_START"):
            env.pop(key, None)
        env.update(extra_env or {})
        command = [sys.executable, "-m", "giaitrinh.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), "--threads", str(threads)]
        if not scheduler:
            command.append("--no-scheduler")
        # Its own process group, so stopping it stops gunicorn's workers too.
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def __enter__(self) -> "Served":
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"giaitrinh serve exited: {self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        raise RuntimeError(f"giaitrinh serve did not answer within {timeout} s: {self.output()[-3000:]}")

    def output(self) -> str:
        self.log.flush()
        return (Path(self.instance.name) / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        self.instance.cleanup()

    # -- talking to it ---------------------------------------------------------------------

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def token(self, username: str, password: str = "demo") -> str:
        body = json.dumps({"username": username, "password": password}).encode()
        request = urllib.request.Request(self.base + "/api/v1/auth/token", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["token"]

    def session_cookie(self, username: str, password: str = "demo") -> str:
        """Sign in through the login form (CSRF token included); returns the Cookie header value.

        Cookies are handled by hand: in production they are ``Secure`` and a cookie jar would
        not send them over plain HTTP on loopback.
        """
        opener = urllib.request.build_opener(NoRedirect)
        with opener.open(self.base + "/dang-nhap", timeout=60) as answer:
            cookie = _cookie(answer.headers)
            csrf = re.search(r'name="_csrf" value="([^"]+)"', answer.read().decode()).group(1)
        form = urllib.parse.urlencode({"username": username, "password": password, "_csrf": csrf}).encode()
        request = urllib.request.Request(self.base + "/dang-nhap", data=form, headers={"Cookie": cookie})
        try:
            opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:  # the redirect after signing in
            if error.code != 302:
                raise
            return _cookie(error.headers)
        raise RuntimeError("signing in did not redirect")

    # -- memory ----------------------------------------------------------------------------

    def tree(self) -> list[int]:
        """The server's process and every descendant (gunicorn's master and workers)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def memory(self) -> dict:
        """Resident (RSS) and proportional (PSS: shared pages divided among sharers) sizes, in MB."""
        rss = pss = 0
        biggest = 0
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            one = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            rss += one
            biggest = max(biggest, one)
            match = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
            pss += int(match.group(1)) if match else one
        return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "largest_process_rss_mb": biggest / 1024,
                "processes": len(self.tree())}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _cookie(headers) -> str:
    return "; ".join(value.split(";", 1)[0] for value in headers.get_all("Set-Cookie") or [])
