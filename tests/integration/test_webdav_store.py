"""The WebDAV store against a real WebDAV server (wsgidav, started by the test module on loopback).

Each test gets its own collection on the server; what the server holds is read from the folder it
serves, so that a temporary or partial file cannot hide from the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from services.uploader.handlers import Retry, UploadFailed, put_with_retry
from services.uploader.store import SourceError, StoredFile, StoreError, StoreUnavailable, UnsafeName
from services.uploader.store_choice import make_store
from services.uploader.webdav_store import WebDavStore
from shared.messages import ExtractCreated, ExtractKey, FileInfo
from shared.settings import Settings
from tests.tcp_proxy import HttpFaultProxy
from tests.webdav_server import WebDavServer, free_port, running_webdav_server

pytestmark = pytest.mark.integration

NAME = "nsbs_matched_detections_2022.zip"
FINAL = f"nsbs/detection-extracts/{NAME}"


@pytest.fixture(scope="module")
def webdav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavServer]:
    with running_webdav_server(tmp_path_factory.mktemp("webdav")) as server:
        yield server


@pytest.fixture
def share(webdav: WebDavServer) -> tuple[str, Path]:
    """A fresh collection on the server: its URL and the folder that holds its files."""
    return webdav.folder(uuid.uuid4().hex[:10])


@pytest.fixture
async def proxy(webdav: WebDavServer) -> AsyncIterator[HttpFaultProxy]:
    helper = HttpFaultProxy("127.0.0.1", urlsplit(webdav.url).port or 80)
    await helper.start()
    yield helper
    await helper.stop()


def store_of(webdav: WebDavServer, url: str, password: str | None = None) -> WebDavStore:
    return WebDavStore(url, webdav.user, webdav.password if password is None else password, timeout=10)


def via(proxy: HttpFaultProxy, url: str) -> str:
    """`url` through the proxy."""
    return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{proxy.port}"))


def staged(folder: Path, content: bytes, name: str = NAME) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def held(folder: Path) -> list[str]:
    """Every file under the served folder, temporary ones included, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


async def fetch(webdav: WebDavServer, url: str) -> httpx.Response:
    async with httpx.AsyncClient(auth=(webdav.user, webdav.password), timeout=10) as client:
        return await client.get(url)


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def created(local: Path, sha256: str) -> tuple[ExtractCreated, FileInfo]:
    file = FileInfo(name=local.name, path=str(local), size=local.stat().st_size, sha256=sha256)
    msg = ExtractCreated(
        push_date=dt.date(2025, 6, 12),
        job_id=1,
        extract=ExtractKey(code="NSBS", year=2022, type="t"),
        node="OTN",
        files=[file],
        rows=1,
    )
    return msg, file


async def test_creates_the_collections_and_the_file(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    content = os.urandom(300_000)
    local, sha = staged(tmp_path, content)
    stored = await store_of(webdav, url).put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert stored == StoredFile(FINAL, f"{url}/{FINAL}", copied=True)
    assert held(folder) == [FINAL]
    assert (folder / FINAL).read_bytes() == content
    fetched = await fetch(webdav, stored.url)
    assert fetched.status_code == 200 and fetched.content == content


async def test_names_are_percent_encoded(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    name = "odd name #1 100% é.zip"
    local, sha = staged(tmp_path, b"odd", name)
    stored = await store_of(webdav, url).put(local, node="OTN", code="Proj 7", name=name, sha256=sha)
    assert stored.location == f"proj 7/detection-extracts/{name}"
    assert stored.url == f"{url}/proj%207/detection-extracts/odd%20name%20%231%20100%25%20%C3%A9.zip"
    assert held(folder) == [stored.location]
    assert (await fetch(webdav, stored.url)).content == b"odd"


async def test_replace_leaves_one_file_with_the_new_content(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    store = store_of(webdav, url)
    for version, content in enumerate((b"first version" * 1000, b"second, longer version" * 1000)):
        local, sha = staged(tmp_path / str(version), content)
        stored = await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
        assert stored.copied
        assert held(folder) == [FINAL]
        assert (folder / FINAL).read_bytes() == content
    # the same length, other bytes: still replaced (the size alone does not decide)
    local, sha = staged(tmp_path / "same-size", b"x" * len(b"second, longer version" * 1000))
    assert (await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)).copied
    assert (folder / FINAL).read_bytes() == local.read_bytes()
    assert held(folder) == [FINAL]


async def test_the_same_content_again_is_not_rewritten(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    store = store_of(webdav, url)
    local, sha = staged(tmp_path, os.urandom(50_000))
    assert (await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)).copied
    before = (folder / FINAL).stat()
    again = await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert again == StoredFile(FINAL, f"{url}/{FINAL}", copied=False)
    # a redelivery after the staged file was cleaned up: the store still knows it holds the file
    local.unlink()
    assert not (await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)).copied
    after = (folder / FINAL).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert held(folder) == [FINAL]


async def test_content_that_does_not_match_its_sha256_never_reaches_the_final_name(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    store = store_of(webdav, url)
    old, old_sha = staged(tmp_path / "old", b"the published version")
    await store.put(old, node="OTN", code="NSBS", name=NAME, sha256=old_sha)
    local, _ = staged(tmp_path / "new", b"bytes that changed after the event was sent")
    promised = hashlib.sha256(b"what the extractor built").hexdigest()
    with pytest.raises(SourceError, match="sha256") as caught:
        await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=promised)
    assert not caught.value.transient
    assert held(folder) == [FINAL] and (folder / FINAL).read_bytes() == b"the published version"

    # and on an empty collection: nothing at all is left
    with pytest.raises(SourceError):
        await store.put(local, node="OTN", code="NSBS", name="other.zip", sha256=promised)
    assert held(folder) == [FINAL]


async def test_a_missing_staged_file_is_a_source_error(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    with pytest.raises(SourceError, match="cannot be read"):
        await store_of(webdav, url).put(
            tmp_path / "gone.zip", node="OTN", code="NSBS", name="gone.zip", sha256="0" * 64
        )
    assert held(folder) == []


async def test_a_wrong_password_fails_at_once_without_showing_it(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, folder = share
    secret = "wrong-" + uuid.uuid4().hex
    store = store_of(webdav, url, password=secret)
    local, sha = staged(tmp_path, b"content")
    with pytest.raises(StoreError) as caught:
        await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert not caught.value.transient
    message = str(caught.value)
    assert url in message and "401" in message and "OTN_PUSH_WEBDAV_PASSWORD" in message
    assert secret not in message

    sleep = RecordingSleep()
    msg, file = created(local, sha)
    with caplog.at_level(logging.DEBUG), pytest.raises(UploadFailed) as failed:
        await put_with_retry(store, msg, file, Retry(attempts=4, base_delay=0.01, sleep=sleep))
    assert sleep.delays == []  # not retried
    assert "401" in failed.value.reason and secret not in failed.value.reason
    assert secret not in caplog.text
    assert held(folder) == []


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("..", NAME),
        ("NSBS/../../x", NAME),
        ("NSBS", "../escape.zip"),
        ("NSBS", ".hidden.zip"),
        ("NSBS", "a/b.zip"),
        ("NSBS", "line\nbreak.zip"),
        ("", NAME),
    ],
)
async def test_unsafe_names_are_refused_before_any_request(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path, code: str, name: str
) -> None:
    url, folder = share
    local, sha = staged(tmp_path, b"content", "local.zip")
    with pytest.raises(UnsafeName):
        await store_of(webdav, url).put(local, node="OTN", code=code, name=name, sha256=sha)
    assert held(folder) == [] and list(folder.iterdir()) == []
    assert not any(p.name == "escape.zip" for p in webdav.root.parent.rglob("*"))


async def test_leftover_temporary_files_of_an_interrupted_upload_are_removed(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    collection = folder / "nsbs" / "detection-extracts"
    collection.mkdir(parents=True)
    (collection / f".{NAME}.0123456789ab.tmp").write_bytes(b"half an upload of a killed uploader")
    (collection / ".other.zip.0123456789ab.tmp").write_bytes(b"another file's: not ours to judge")
    local, sha = staged(tmp_path, b"complete")
    await store_of(webdav, url).put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert held(folder) == ["nsbs/detection-extracts/.other.zip.0123456789ab.tmp", FINAL]


async def test_a_missing_base_collection_is_named(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    local, sha = staged(tmp_path, b"content")
    with pytest.raises(StoreUnavailable, match="OTN_PUSH_WEBDAV_URL must name an existing collection"):
        await store_of(webdav, f"{url}/no-such-folder").put(
            local, node="OTN", code="NSBS", name=NAME, sha256=sha
        )
    assert list(folder.iterdir()) == []


async def test_a_collection_at_the_file_name_is_refused_and_kept(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    (folder / FINAL).mkdir(parents=True)
    (folder / FINAL / "keep.txt").write_bytes(b"someone's")
    local, sha = staged(tmp_path, b"content")
    with pytest.raises(StoreUnavailable, match="is a collection where a file should be"):
        await store_of(webdav, url).put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert held(folder) == [f"{FINAL}/keep.txt"]


async def test_an_unreachable_server_is_transient(tmp_path: Path) -> None:
    store = WebDavStore(f"http://127.0.0.1:{free_port()}/dav", "u", "p", timeout=5)
    local, sha = staged(tmp_path, b"content")
    with pytest.raises(StoreUnavailable, match="ConnectError") as caught:
        await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert caught.value.transient


async def test_a_server_that_does_not_answer_times_out_as_transient(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    local, sha = staged(tmp_path, b"content")
    try:
        store = WebDavStore(f"http://127.0.0.1:{port}/dav", "u", "p", timeout=0.5)
        with pytest.raises(StoreUnavailable, match=r"timed out after 0\.5s") as caught:
            await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
        assert caught.value.transient and accepted
    finally:
        for writer in accepted:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_the_connection_dropped_mid_upload_is_retried_and_no_reader_sees_a_partial_file(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path, proxy: HttpFaultProxy
) -> None:
    url, folder = share
    direct = store_of(webdav, url)
    through = store_of(webdav, via(proxy, url))
    old, old_sha = staged(tmp_path / "old", os.urandom(1_000_000))
    await direct.put(old, node="OTN", code="NSBS", name=NAME, sha256=old_sha)
    new, new_sha = staged(tmp_path / "new", os.urandom(4_000_000))

    # a reader fetching the final name throughout: it may see the old file or the new one, never a part
    seen: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def reader() -> None:
        async with httpx.AsyncClient(auth=(webdav.user, webdav.password), timeout=10) as client:
            while not stop.is_set():
                answer = await client.get(f"{url}/{FINAL}")
                seen.append((answer.status_code, hashlib.sha256(answer.content).hexdigest()))
                await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    proxy.cut("PUT", after=1_000_000)
    sleep = RecordingSleep()
    msg, file = created(new, new_sha)
    try:
        stored = await put_with_retry(through, msg, file, Retry(attempts=3, base_delay=0.01, sleep=sleep))
    finally:
        stop.set()
        await reading

    assert [d.split(" ")[0] for d in proxy.done] == ["cut"] and "PUT" in proxy.done[0]
    assert sleep.delays == [0.01]  # one failed attempt, then success
    assert stored.copied and stored.location == FINAL
    assert (folder / FINAL).read_bytes() == new.read_bytes()
    assert held(folder) == [FINAL], "no temporary file may stay"
    assert seen, "the reader never ran"
    # wsgidav's MOVE deletes the old file before renaming, so a reader may briefly get 404
    assert {status for status, _ in seen} <= {200, 404}
    assert {digest for status, digest in seen if status == 200} <= {old_sha, new_sha}


async def test_503_is_retried_then_gives_up_with_nothing_left(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path, proxy: HttpFaultProxy
) -> None:
    url, folder = share
    through = store_of(webdav, via(proxy, url))
    local, sha = staged(tmp_path, os.urandom(200_000))
    msg, file = created(local, sha)

    proxy.answer("PUT", 503, times=2)
    sleep = RecordingSleep()
    stored = await put_with_retry(through, msg, file, Retry(attempts=4, base_delay=0.01, sleep=sleep))
    assert sleep.delays == [0.01, 0.02] and stored.copied
    assert held(folder) == [FINAL] and (folder / FINAL).read_bytes() == local.read_bytes()

    other, other_sha = staged(tmp_path / "other", b"never stored", "other.zip")
    msg, file = created(other, other_sha)
    proxy.answer("PUT", 503, times=3)
    with pytest.raises(UploadFailed) as failed:
        await put_with_retry(through, msg, file, Retry(attempts=3, base_delay=0.01, sleep=RecordingSleep()))
    assert "503" in failed.value.reason and "gave up after 3 attempts" in failed.value.reason
    assert held(folder) == [FINAL]


async def test_make_store_builds_it_from_the_settings(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = share
    settings = Settings(
        store="webdav",
        webdav_url=url + "/",
        webdav_user=webdav.user,
        webdav_password=webdav.password,  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    store = make_store(settings)
    assert isinstance(store, WebDavStore)
    local, sha = staged(tmp_path, b"from settings")
    stored = await store.put(local, node="OTN", code="NSBS", name=NAME, sha256=sha)
    assert stored.url == f"{url}/{FINAL}"
    assert (folder / FINAL).read_bytes() == b"from settings"


async def test_the_account_and_collection_are_checked_at_start(
    webdav: WebDavServer, share: tuple[str, Path]
) -> None:
    url, _ = share
    await store_of(webdav, url).check()
    secret = "wrong-" + uuid.uuid4().hex
    with pytest.raises(StoreError) as refused:
        await store_of(webdav, url, password=secret).check()
    assert not refused.value.transient and "OTN_PUSH_WEBDAV_PASSWORD" in str(refused.value)
    assert secret not in str(refused.value)
    with pytest.raises(StoreError, match="the collection does not exist") as missing:
        await store_of(webdav, url + "/nowhere").check()
    assert not missing.value.transient
    with pytest.raises(StoreUnavailable):
        await store_of(webdav, f"http://127.0.0.1:{free_port()}/dav").check()


def run_uploader(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.uploader` on a WebDAV store, on an exchange of its own, until it exits."""
    env = {
        **os.environ,
        "OTN_PUSH_STORE": "webdav",
        "OTN_PUSH_EXCHANGE": f"otn.push.t-{uuid.uuid4().hex[:8]}",
        "OTN_PUSH_METRICS_PORT": "0",
        "OTN_PUSH_STAGING_DIR": str(tmp_path / "staging"),
        **{f"OTN_PUSH_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "services.uploader"], env=env, capture_output=True, text=True, timeout=120
    )


def test_an_uploader_with_a_wrong_password_stops_at_start_with_one_line(
    webdav: WebDavServer, share: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = share
    secret = "wrong-" + uuid.uuid4().hex
    done = run_uploader(tmp_path, webdav_url=url, webdav_user=webdav.user, webdav_password=secret)
    assert done.returncode == 1, done.stderr
    # the log lines before it, then the one line that says why
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("otn-push uploader: cannot start:") and "Traceback" not in done.stderr
    assert "OTN_PUSH_WEBDAV_PASSWORD" in last and secret not in done.stderr + done.stdout


def test_an_uploader_whose_store_never_answers_stops_at_start_after_the_wait(tmp_path: Path) -> None:
    mistyped = f"http://127.0.0.1:{free_port()}/dav/data/repository"
    done = run_uploader(tmp_path, webdav_url=mistyped, store_start_wait="2")
    assert done.returncode == 1, done.stderr
    assert "not reachable at start, asking again in" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"otn-push uploader: cannot start: store webdav {mistyped} did not answer for 2 s")
    assert "(OTN_PUSH_STORE_START_WAIT)" in last and "Traceback" not in done.stderr
