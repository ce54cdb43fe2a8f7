"""A real Plone 6.2 site (classic UI, plone.restapi) on a loopback port, for the Plone store's tests.

The Plone environment is built once per lock file (`tests/plone/requirements.lock`), outside the
clone, in `~/.cache/otn-push/plone-<hash>` (or `$OTN_PUSH_PLONE_CACHE/plone-<hash>`): a relocatable
venv made with uv (which caches the wheels), and a template database holding the site `Plone`, the
folders `data/repository` and a service account with local roles there. Builds take a file lock and
happen in a temporary folder renamed when complete, so parallel or interrupted runs never use a
half-built one. Each session copies the template into a temporary instance and serves it with
`runwsgi`; the site is fresh every session.

`python -m tests.plone_server` starts a site and prints its URL and service account until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent / "plone"
LOCK = HERE / "requirements.lock"
CREATE_SITE = HERE / "create_site.py"
SITE_ID = "Plone"
SERVICE_USER = "otnpush-uploader"
START_TIMEOUT = 240.0  # a loaded CI machine takes a while to load Plone's ZCML
BUILD_TIMEOUT = 1200.0


class PloneUnavailable(Exception):
    """The Plone environment cannot be built or the site cannot be started here."""


@dataclass
class PloneSite:
    url: str  # the site, e.g. http://127.0.0.1:41234/Plone
    user: str  # the service account
    password: str
    admin_password: str
    instance: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def admin_auth(self) -> tuple[str, str]:
        return ("admin", self.admin_password)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.instance, ignore_errors=True)


def cache_root() -> Path:
    base = os.environ.get("OTN_PUSH_PLONE_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "otn-push"


def env_key() -> str:
    digest = hashlib.sha256(LOCK.read_bytes() + CREATE_SITE.read_bytes())
    return digest.hexdigest()[:12]


def uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise PloneUnavailable("uv is not installed (it is a dev dependency: pip install -e '.[dev]')")
    return found


def _run(cmd: list[str], what: str, timeout: float, **kw: object) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise PloneUnavailable(f"{what} took longer than {timeout:.0f}s") from None
    if done.returncode != 0:
        tail = (done.stderr or b"").decode(errors="replace")[-2000:]
        raise PloneUnavailable(f"{what} failed (exit {done.returncode}): {tail}")


def zope_conf(instance: Path) -> str:
    # without blob-dir the first File upload fails with 500
    return f"""%define INSTANCE {instance}
instancehome $INSTANCE
<zodb_db main>
  <filestorage>
    path $INSTANCE/var/Data.fs
    blob-dir $INSTANCE/var/blobstorage
  </filestorage>
  mount-point /
</zodb_db>
<environment>
  CHAMELEON_CACHE $INSTANCE/var/cache
</environment>
"""


def zope_ini(instance: Path, port: int) -> str:
    return f"""[app:zope]
use = egg:Zope#main
zope_conf = {instance}/etc/zope.conf

[server:main]
use = egg:waitress#main
host = 127.0.0.1
port = {port}
threads = 4

[filter:translogger]
use = egg:Paste#translogger
setup_console_handler = False

[pipeline:main]
pipeline =
    egg:Zope#httpexceptions
    translogger
    zope

[loggers]
keys = root, wsgi

[handlers]
keys = console, accesslog

[formatters]
keys = generic, message

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s

[formatter_message]
format = %(message)s

[logger_root]
level = WARN
handlers = console

[logger_wsgi]
level = INFO
handlers = accesslog
qualname = wsgi
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[handler_accesslog]
class = FileHandler
args = (r'{instance}/var/log/access.log', 'a')
level = INFO
formatter = message
"""


def build_env() -> Path:
    """The built Plone environment for the current lock file (building it once, under a file lock)."""
    root = cache_root()
    key = env_key()
    target = root / f"plone-{key}"
    if (target / "ready.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"plone-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "ready.json").is_file():
            return target  # built by another process while we waited
        for stale in root.glob(f".plone-{key}.build-*"):  # left by an interrupted build
            shutil.rmtree(stale, ignore_errors=True)
        build = root / f".plone-{key}.build-{uuid.uuid4().hex[:8]}"
        try:
            _build_into(build)
            build.rename(target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def _build_into(build: Path) -> None:
    env = build / "env"
    _run([uv(), "venv", "-q", "--relocatable", "--python", sys.executable, str(env)], "uv venv", 300)
    _run(
        [uv(), "pip", "install", "-q", "--python", str(env / "bin" / "python"), "-r", str(LOCK)],
        f"uv pip install -r {LOCK.name}",
        BUILD_TIMEOUT,
    )
    template = build / "template"
    admin_password = secrets.token_urlsafe(16)
    service_password = secrets.token_urlsafe(16)
    _run(
        [str(env / "bin" / "mkwsgiinstance"), "-d", str(template), "-u", f"admin:{admin_password}"],
        "mkwsgiinstance",
        300,
    )
    (template / "etc" / "zope.conf").write_text(zope_conf(template))
    _run(
        [
            str(env / "bin" / "zconsole"),
            "run",
            str(template / "etc" / "zope.conf"),
            str(CREATE_SITE),
            SERVICE_USER,
            service_password,
            admin_password,
        ],
        "creating the Plone site",
        600,
    )
    ready = build / "ready.json"
    ready.write_text(
        json.dumps({"user": SERVICE_USER, "password": service_password, "admin_password": admin_password})
    )
    ready.chmod(0o600)


def _stop_with_parent() -> None:
    """In the server process (Linux): SIGTERM when the test session dies without stopping it (kill -9)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_site() -> PloneSite:
    """Build (if needed) and start a fresh site; raises PloneUnavailable with the reason."""
    if sys.platform == "win32":
        raise PloneUnavailable("the Plone test site needs a POSIX system")
    if not LOCK.is_file():
        raise PloneUnavailable(f"{LOCK} is missing")
    env = build_env()
    ready = json.loads((env / "ready.json").read_text())
    instance = Path(tempfile.mkdtemp(prefix="otn-push-plone-"))
    try:
        (instance / "etc").mkdir()
        (instance / "var" / "log").mkdir(parents=True)
        (instance / "var" / "cache").mkdir()
        shutil.copy2(env / "template" / "var" / "Data.fs", instance / "var" / "Data.fs")
        shutil.copytree(env / "template" / "var" / "blobstorage", instance / "var" / "blobstorage")
        port = free_port()
        (instance / "etc" / "zope.conf").write_text(zope_conf(instance))
        (instance / "etc" / "zope.ini").write_text(zope_ini(instance, port))
        log = (instance / "var" / "log" / "run.log").open("wb")
        process = subprocess.Popen(
            [str(env / "env" / "bin" / "runwsgi"), str(instance / "etc" / "zope.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TUS_TMP_FILE_DIR": str(instance / "var" / "tus")},
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the server
            preexec_fn=_stop_with_parent,
        )
        log.close()
    except BaseException:
        shutil.rmtree(instance, ignore_errors=True)
        raise
    site = PloneSite(
        url=f"http://127.0.0.1:{port}/{SITE_ID}",
        user=ready["user"],
        password=ready["password"],
        admin_password=ready["admin_password"],
        instance=instance,
        process=process,
    )
    try:
        _wait_ready(site)
    except BaseException:
        site.stop()
        raise
    return site


def _wait_ready(site: PloneSite) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if site.process.poll() is not None:
            tail = (site.instance / "var" / "log" / "run.log").read_text(errors="replace")[-2000:]
            raise PloneUnavailable(f"runwsgi exited with {site.process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            got = httpx.get(site.url, auth=site.auth, headers={"Accept": "application/json"}, timeout=5)
            if got.status_code == 200:
                return
        time.sleep(0.5)
    raise PloneUnavailable(f"the Plone site at {site.url} did not answer within {START_TIMEOUT:.0f}s")


# -- the pytest fixture: one site per test session, shared by every module that imports it --------

_site: PloneSite | None = None
_failure: str | None = None
_users = 0


def _acquire() -> PloneSite:
    global _site, _failure, _users
    if _site is None and _failure is None:
        try:
            _site = start_site()
        except (PloneUnavailable, OSError) as exc:
            _failure = f"cannot start a Plone test site: {exc}"
    if _site is None:
        reason = _failure or "cannot start a Plone test site"
        if os.environ.get("OTN_PUSH_REQUIRE_STORES") == "1":
            pytest.fail(reason + " (OTN_PUSH_REQUIRE_STORES=1)")
        pytest.skip(reason)
    _users += 1
    return _site


def _release() -> None:
    global _site, _users
    _users -= 1
    if _users == 0 and _site is not None:
        _site.stop()
        _site = None


@pytest.fixture(scope="session", name="plone_site")
def plone_site_fixture() -> Iterator[PloneSite]:
    """A running Plone site with its service account; skipped (failed with OTN_PUSH_REQUIRE_STORES=1)
    where it cannot be built or started."""
    site = _acquire()
    try:
        yield site
    finally:
        _release()


def main() -> None:
    print("building/starting Plone 6.2 (first time: a few minutes) …", flush=True)
    started = time.monotonic()
    try:
        site = start_site()
    except (PloneUnavailable, OSError) as exc:
        sys.exit(f"cannot start a Plone test site: {exc}")
    print(f"Plone site:       {site.url}  (started in {time.monotonic() - started:.0f}s)")
    print(f"service account:  {site.user} / {site.password}")
    print(f"admin:            admin / {site.admin_password}")
    print(f"instance:         {site.instance}  (deleted on exit)")
    print("for otn-push:")
    print(f"  export OTN_PUSH_STORE=plone OTN_PUSH_PLONE_URL={site.url} OTN_PUSH_PLONE_USER={site.user}")
    print(f"  export OTN_PUSH_PLONE_PASSWORD={site.password}")
    print("Ctrl-C (or SIGTERM) stops it.", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` too removes the instance
    try:
        while site.process.poll() is None:
            time.sleep(1)
        print(f"runwsgi exited with {site.process.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()


if __name__ == "__main__":
    main()
