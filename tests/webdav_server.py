"""A real WebDAV server for tests and for trying otn-push by hand: wsgidav on cheroot, basic auth.

Tests: `with running_webdav_server(tmp) as server:` starts `python -m tests.webdav_server` as a process
on a free loopback port serving `tmp`, waits until it answers, and stops it afterwards; where it cannot
start the test is skipped with the reason, or fails when OTN_PUSH_REQUIRE_STORES=1 (as in CI).

By hand: `python -m tests.webdav_server [--root DIR] [--port N]` serves DIR (default: a new temporary
folder) until Ctrl-C and prints the settings that point otn-push at it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARE = "/dav"  # served below a path, as real web folders are, so that URLs with a path are exercised
USER_VARIABLE = "WEBDAV_SERVER_USER"
PASSWORD_VARIABLE = "WEBDAV_SERVER_PASSWORD"
READY_WITHIN = 30.0


class ServerUnavailable(RuntimeError):
    """The WebDAV server could not be started; the message says why."""


@dataclass
class WebDavServer:
    url: str  # the share, e.g. http://127.0.0.1:PORT/dav (no trailing slash)
    root: Path  # the folder it serves
    user: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def folder(self, name: str) -> tuple[str, Path]:
        """A fresh collection for one test: its URL and the folder behind it."""
        (self.root / name).mkdir()
        return f"{self.url}/{name}", self.root / name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_webdav_server(root: Path, log: Path, port: int | None = None) -> WebDavServer:
    """Start the server as a process serving `root`; raises ServerUnavailable with the reason."""
    missing = [m for m in ("wsgidav", "cheroot") if importlib.util.find_spec(m) is None]
    if missing:
        raise ServerUnavailable(f"{' and '.join(missing)} not installed (pip install -e '.[dev]')")
    port = port or free_port()
    user, password = "otn-push-test", secrets.token_urlsafe(16)
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.webdav_server", "--root", str(root), "--port", str(port), "--quiet"],
        cwd=ROOT,
        env={**os.environ, USER_VARIABLE: user, PASSWORD_VARIABLE: password},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    server = WebDavServer(f"http://127.0.0.1:{port}{SHARE}", root, user, password, process, log)
    deadline = time.monotonic() + READY_WITHIN
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise ServerUnavailable(
                f"wsgidav exited with {process.returncode} at start: {' | '.join(tail) or 'no output'}"
            )
        try:
            answer = httpx.request(
                "PROPFIND", f"{server.url}/", auth=(user, password), headers={"Depth": "0"}, timeout=2
            )
            if answer.status_code == 207:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise ServerUnavailable(f"wsgidav did not answer on port {port} within {READY_WITHIN:g}s")
        time.sleep(0.1)


def unavailable(reason: str) -> None:
    """Skip the test with the reason; fail it when the stores are required (CI)."""
    import pytest

    if os.environ.get("OTN_PUSH_REQUIRE_STORES") == "1":
        pytest.fail(f"{reason} (OTN_PUSH_REQUIRE_STORES=1)")
    pytest.skip(reason)


@contextmanager
def running_webdav_server(base: Path) -> Iterator[WebDavServer]:
    """A server serving `base/share` for the block (skips or fails the test if it cannot start)."""
    root = base / "share"
    root.mkdir(parents=True, exist_ok=True)
    try:
        server = start_webdav_server(root, base / "wsgidav.log")
    except ServerUnavailable as exc:
        unavailable(f"no WebDAV server: {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield server
    finally:
        server.stop()


def config(root: Path, host: str, port: int, user: str, password: str, verbose: int) -> dict[str, Any]:
    """wsgidav settings: `root` at SHARE, one account, basic auth only, no lock or property store."""
    return {
        "host": host,
        "port": port,
        "provider_mapping": {SHARE: str(root)},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": verbose,
        "logging": {"enable_loggers": []},
        "dir_browser": {"enable": True},
        "property_manager": None,
        "lock_storage": True,
    }


def serve(root: Path, host: str, port: int, user: str, password: str, verbose: int) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp(config(root, host, port, user, password, verbose))
    server = wsgi.Server((host, port), app, numthreads=8)
    # SIGTERM stops like Ctrl-C: the tests stop the server that way
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A WebDAV server (wsgidav) for otn-push's WebDAV store.")
    parser.add_argument("--root", type=Path, help="folder to serve (default: a new temporary folder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--quiet", action="store_true", help="print nothing; log warnings only")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    root = (args.root or Path(tempfile.mkdtemp(prefix="otn-push-webdav-"))).resolve()
    if not root.is_dir():
        parser.error(f"--root {root}: not a folder")
    user = os.environ.get(USER_VARIABLE) or "otn-push"
    password = os.environ.get(PASSWORD_VARIABLE) or secrets.token_urlsafe(12)
    if not args.quiet:
        url = f"http://{args.host}:{port}{SHARE}"
        print(f"WebDAV server for {root} at {url}/ (user {user}, password {password}); Ctrl-C stops it.")
        print("Point otn-push at it with:\n")
        print("  export OTN_PUSH_STORE=webdav")
        print(f"  export OTN_PUSH_WEBDAV_URL={url}/data/repository")
        print(f"  export OTN_PUSH_WEBDAV_USER={user}")
        print(f"  export OTN_PUSH_WEBDAV_PASSWORD={password}\n", flush=True)
        (root / "data" / "repository").mkdir(parents=True, exist_ok=True)
    try:
        serve(root, args.host, port, user, password, verbose=1 if args.quiet else 3)
    except OSError as exc:
        parser.exit(1, f"cannot serve on {args.host}:{port}: {exc.strerror or exc}\n")
    finally:
        if args.root is None:  # the temporary folder made for this run
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
