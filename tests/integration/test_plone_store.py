"""The Plone store against a real Plone 6.2 site (plone.restapi), started for the session."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.uploader import plone_store
from services.uploader.handlers import Retry, put_with_retry
from services.uploader.plone_store import PloneStore
from services.uploader.store import SourceError, StoreError, StoreUnavailable
from shared.messages import ExtractCreated, ExtractKey, FileInfo
from tests.plone_server import PloneSite, plone_site_fixture  # noqa: F401 (the session fixture `plone_site`)

# the first test also builds the Plone environment when no earlier run left it (minutes, from nothing)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JSON = {"Accept": "application/json"}


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def new_code() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}"


def store_for(site: PloneSite, **kw: Any) -> PloneStore:
    return PloneStore(site.url, site.user, site.password, **kw)


def folder_url(site: PloneSite, code: str, node: str | None = None) -> str:
    middle = f"{node.lower()}/" if node else ""
    return f"{site.url}/data/repository/{middle}{code.lower()}/detection-extracts"


def get(site: PloneSite, url: str) -> httpx.Response:
    return httpx.get(url, auth=site.auth, headers=JSON, timeout=60)


def files_in(site: PloneSite, url: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{url}?b_size=1000", auth=site.auth, headers=JSON, timeout=60)
    if got.status_code == 404:
        return []
    got.raise_for_status()
    return [item for item in got.json()["items"] if item["@type"] == "File"]


def download(site: PloneSite, item_url: str) -> bytes:
    got = httpx.get(f"{item_url}/@@download/file", auth=site.auth, timeout=120)
    assert got.status_code == 200, got.text[:300]
    return got.content


class Recording(httpx.AsyncHTTPTransport):
    """Remembers every request (method, url, content type) on its way to the site."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, str(request.url), request.headers.get("content-type", "")))
        return await super().handle_async_request(request)

    def count(self, method: str, url_part: str = "", content_type: str = "") -> int:
        return sum(1 for m, u, c in self.seen if m == method and url_part in u and content_type in c)


async def test_create_folders_titles_and_id_rules(plone_site: PloneSite, tmp_path: Path) -> None:
    site, code = plone_site, new_code()
    store = store_for(site)
    parquet = tmp_path / f"{code.lower()}_matched_detections_2024.parquet"
    zipped = tmp_path / f"{code.lower()}_matched_detections_2024.zip"
    p_sha = write(parquet, b"PAR1 parquet bytes " + os.urandom(500))
    z_sha = write(zipped, b"PK\x03\x04 zip bytes " + os.urandom(500))

    p = await store.put(parquet, node="OTN", code=code, name=parquet.name, sha256=p_sha)
    z = await store.put(zipped, node="OTN", code=code, name=zipped.name, sha256=z_sha)

    folder = folder_url(site, code)
    assert p.copied and z.copied
    assert p.url == f"{folder}/{code.lower()}_matched_detections_2024-parquet"
    assert z.url == f"{folder}/{zipped.name}"
    assert (
        p.location
        == f"data/repository/{code.lower()}/detection-extracts/{code.lower()}_matched_detections_2024-parquet"
    )
    project, extracts = get(site, f"{site.url}/data/repository/{code.lower()}"), get(site, folder)
    assert (project.json()["@type"], project.json()["title"]) == ("Folder", code)
    assert (extracts.json()["@type"], extracts.json()["title"]) == ("Folder", "Detection extracts")
    item = get(site, p.url).json()
    assert (item["@type"], item["title"], item["file"]["filename"]) == ("File", parquet.name, parquet.name)
    assert item["description"] == f"sha256:{p_sha}"
    assert download(site, p.url) == parquet.read_bytes()
    assert download(site, z.url) == zipped.read_bytes()


async def test_node_folders(plone_site: PloneSite, tmp_path: Path) -> None:
    site, code = plone_site, new_code()
    path = tmp_path / "x_2023.zip"
    stored = await store_for(site, node_folders=True).put(
        path, node="ACT", code=code, name=path.name, sha256=write(path, b"act")
    )
    assert stored.url == f"{folder_url(site, code, node='ACT')}/x_2023.zip"
    assert get(site, f"{site.url}/data/repository/act").json()["title"] == "ACT"


async def test_replace_in_place_then_recognise_same_content(plone_site: PloneSite, tmp_path: Path) -> None:
    site, code = plone_site, new_code()
    store = store_for(site)
    path = tmp_path / "y_2022.parquet"
    first = await store.put(path, node="OTN", code=code, name=path.name, sha256=write(path, b"version one"))
    second = await store.put(path, node="OTN", code=code, name=path.name, sha256=write(path, b"version two!"))
    again = await store.put(
        path, node="OTN", code=code, name=path.name, sha256=hashlib.sha256(b"version two!").hexdigest()
    )

    assert first.url == second.url == again.url
    assert (first.copied, second.copied, again.copied) == (True, True, False)
    items = files_in(site, folder_url(site, code))
    assert [i["@id"] for i in items] == [first.url]  # no y_2022-parquet-1
    assert download(site, second.url) == b"version two!"


async def test_large_file_goes_through_tus(plone_site: PloneSite, tmp_path: Path) -> None:
    site, code = plone_site, new_code()
    recording = Recording()
    store = store_for(site, transport=recording)
    path = tmp_path / "big_2021.zip"
    size = 30 * 1024 * 1024
    first = await store.put(path, node="OTN", code=code, name=path.name, sha256=write(path, os.urandom(size)))
    chunks = -(-size // plone_store.TUS_CHUNK)
    assert recording.count("POST", "/@tus-upload") == 1
    assert recording.count("PATCH", "/@tus-upload/", "application/offset+octet-stream") == chunks
    assert recording.count("POST", content_type="application/json") == 2  # the two new folders, not the file

    content = os.urandom(size)
    second = await store.put(path, node="OTN", code=code, name=path.name, sha256=write(path, content))
    assert recording.count("POST", "/@tus-replace") == 1
    assert second.url == first.url
    assert [i["@id"] for i in files_in(site, folder_url(site, code))] == [first.url]
    assert hashlib.sha256(download(site, second.url)).digest() == hashlib.sha256(content).digest()


async def test_source_not_matching_its_hash_leaves_nothing(plone_site: PloneSite, tmp_path: Path) -> None:
    site, code = plone_site, new_code()
    path = tmp_path / "z_2020.zip"
    write(path, b"what the extractor wrote")
    with pytest.raises(SourceError, match=r"z_2020\.zip"):
        await store_for(site).put(
            path, node="OTN", code=code, name=path.name, sha256=hashlib.sha256(b"something else").hexdigest()
        )
    assert files_in(site, folder_url(site, code)) == []


class Corrupting(Recording):
    """Flips one byte of every TUS chunk on its way to the site: an upload that does not arrive intact."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and "offset+octet-stream" in request.headers.get("content-type", ""):
            body = bytearray(await request.aread())
            body[len(body) // 2] ^= 0xFF
            request = httpx.Request(request.method, request.url, headers=request.headers, content=bytes(body))
        return await super().handle_async_request(request)


async def test_corrupted_upload_fails_verification_and_is_removed(
    plone_site: PloneSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site, code = plone_site, new_code()
    monkeypatch.setattr(plone_store, "TUS_THRESHOLD", 1000)
    path = tmp_path / "c_2024.parquet"
    sha = write(path, os.urandom(50_000))
    with pytest.raises(StoreUnavailable, match="does not verify"):
        await store_for(site, transport=Corrupting()).put(
            path, node="OTN", code=code, name=path.name, sha256=sha
        )
    assert files_in(site, folder_url(site, code)) == []
    stored = await store_for(site).put(path, node="OTN", code=code, name=path.name, sha256=sha)
    assert download(site, stored.url) == path.read_bytes()
    assert len(files_in(site, folder_url(site, code))) == 1


class TimeoutAfterCreate(Recording):
    """The item-creating POST reaches the site, but its answer is lost (a timeout on our side)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST" and response.status_code == 201 and b'"File"' in request.content:
            await response.aread()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


async def test_create_that_timed_out_but_happened_gives_no_duplicate(
    plone_site: PloneSite, tmp_path: Path
) -> None:
    site, code = plone_site, new_code()
    path = tmp_path / "d_2024.parquet"
    sha = write(path, b"one copy only")
    with pytest.raises(StoreUnavailable, match="timed out"):
        await store_for(site, transport=TimeoutAfterCreate()).put(
            path, node="OTN", code=code, name=path.name, sha256=sha
        )
    assert len(files_in(site, folder_url(site, code))) == 1  # it did happen
    stored = await store_for(site).put(path, node="OTN", code=code, name=path.name, sha256=sha)
    assert [i["@id"] for i in files_in(site, folder_url(site, code))] == [stored.url]
    assert stored.url.endswith("/d_2024-parquet")
    assert get(site, stored.url).json()["description"] == f"sha256:{sha}"


class BreakSecondChunk(Recording):
    """The connection drops before the second TUS chunk is sent."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and "offset+octet-stream" in request.headers.get("content-type", ""):
            if request.headers["upload-offset"] != "0" and self.count("HEAD") == 0:
                self.seen.append(("BROKEN", str(request.url), ""))
                raise httpx.RemoteProtocolError("connection reset", request=request)
        return await super().handle_async_request(request)


async def test_broken_tus_upload_resumes(
    plone_site: PloneSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site, code = plone_site, new_code()
    monkeypatch.setattr(plone_store, "TUS_THRESHOLD", 1000)
    monkeypatch.setattr(plone_store, "TUS_CHUNK", 64 * 1024)
    path = tmp_path / "e_2024.zip"
    sha = write(path, os.urandom(200_000))
    transport = BreakSecondChunk()
    stored = await store_for(site, transport=transport).put(
        path, node="OTN", code=code, name=path.name, sha256=sha
    )
    assert transport.count("BROKEN") == 1 and transport.count("HEAD") == 1
    assert transport.count("POST", "/@tus-upload") == 1  # resumed, not restarted
    assert download(site, stored.url) == path.read_bytes()
    assert len(files_in(site, folder_url(site, code))) == 1


@contextlib.asynccontextmanager
async def refusing_proxy(target_port: int, refuse: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP proxy to the site that answers its first `refuse` connections with HTTP 503."""
    refused = [0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if refused[0] < refuse:
            refused[0] += 1
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], refused
    finally:
        server.close()


async def test_plone_answering_503_for_a_while(
    plone_site: PloneSite,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    site, code = plone_site, new_code()
    port = httpx.URL(site.url).port
    assert port is not None
    path = tmp_path / f"{code.lower()}_qualified_detections_2023.zip"
    sha = write(path, b"after the outage")
    message = ExtractCreated(
        push_date=dt.date(2025, 6, 12),
        job_id=1,
        extract=ExtractKey(code=code, year=2023, type="q"),
        node="OTN",
        files=[FileInfo(name=path.name, path=str(path), size=path.stat().st_size, sha256=sha)],
        rows=1,
    )
    caplog.set_level(logging.DEBUG)
    async with refusing_proxy(port, refuse=3) as (proxy_port, refused):
        store = PloneStore(f"http://127.0.0.1:{proxy_port}/Plone", site.user, site.password)
        stored = await put_with_retry(store, message, message.files[0], Retry(attempts=5, base_delay=0.05))
    assert refused[0] == 3
    assert "HTTP 503" in caplog.text  # the handler retried the transient error
    assert site.password not in caplog.text
    direct = stored.url.replace(f"127.0.0.1:{proxy_port}", f"127.0.0.1:{port}")
    assert [i["@id"] for i in files_in(site, folder_url(site, code))] == [direct]
    assert download(site, direct) == b"after the outage"


async def test_bad_credentials_and_wrong_site_are_clear_and_secret(
    plone_site: PloneSite,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = plone_site
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "f_2024.zip"
    sha = write(path, b"f")
    wrong = "not-the-password-" + uuid.uuid4().hex
    with pytest.raises(StoreError) as denied:
        await PloneStore(site.url, site.user, wrong).put(
            path, node="OTN", code=new_code(), name=path.name, sha256=sha
        )
    assert not denied.value.transient
    assert site.url in str(denied.value) and "401" in str(denied.value) and site.user in str(denied.value)

    with pytest.raises(StoreError) as missing:
        await PloneStore(site.url + "-nope", site.user, site.password).put(
            path, node="OTN", code=new_code(), name=path.name, sha256=sha
        )
    assert not missing.value.transient
    assert "no Plone site" in str(missing.value) and site.url + "-nope" in str(missing.value)

    for text in (str(denied.value), str(missing.value), caplog.text):
        assert wrong not in text and site.password not in text


async def test_service_account_cannot_write_outside_the_repository(
    plone_site: PloneSite, tmp_path: Path
) -> None:
    site = plone_site
    path = tmp_path / "g_2024.zip"
    with pytest.raises(StoreError) as refused:
        await store_for(site, path="elsewhere").put(
            path, node="OTN", code=new_code(), name=path.name, sha256=write(path, b"g")
        )
    assert not refused.value.transient
    assert "not allowed" in str(refused.value) and site.password not in str(refused.value)


async def test_the_account_is_checked_at_start(plone_site: PloneSite) -> None:
    site = plone_site
    await PloneStore(site.url, site.user, site.password).check()
    wrong = "not-the-password-" + uuid.uuid4().hex
    with pytest.raises(StoreError) as refused:
        await PloneStore(site.url, site.user, wrong).check()
    assert not refused.value.transient and "OTN_PUSH_PLONE_PASSWORD" in str(refused.value)
    assert wrong not in str(refused.value)
    with pytest.raises(StoreError) as missing:
        await PloneStore(site.url + "-nope", site.user, site.password).check()
    assert not missing.value.transient and "404" in str(missing.value)


async def test_a_url_that_is_not_the_site_itself_is_named_at_start(
    plone_site: PloneSite, tmp_path: Path
) -> None:
    site = plone_site
    zope_root = site.url.rsplit("/", 1)[0]  # Zope's own page: the service account is unknown there
    with pytest.raises(StoreError) as root:
        await PloneStore(zope_root, site.user, site.password).check()
    assert not root.value.transient
    assert "answered text/html, not plone.restapi's JSON" in str(root.value) and "not the Zope root" in str(
        root.value
    )
    # the repository folder given as the site: its files would land in data/repository/data/repository
    repository = f"{site.url}/data/repository"
    with pytest.raises(StoreError) as folder:
        await PloneStore(repository, site.user, site.password).check()
    assert "is a Folder inside the site, not the Plone site" in str(folder.value)
    assert "(now data/repository)" in str(folder.value)
    # a folder the service account may not read (its roles are on data/repository only)
    with pytest.raises(StoreError) as private:
        await PloneStore(f"{site.url}/data", site.user, site.password).check()
    assert "HTTP 401 reading it as otnpush-uploader: OTN_PUSH_PLONE_URL must name the Plone site" in str(
        private.value
    )
    path, code = tmp_path / "h_2024.zip", new_code()
    with pytest.raises(StoreError):
        await PloneStore(repository, site.user, site.password).put(
            path, node="OTN", code=code, name=path.name, sha256=write(path, b"h")
        )
    made = get(site, f"{site.url}/@search?id={code.lower()}").json()
    assert made["items_total"] == 0, made  # no project folder anywhere under the wrong URL
    for error in (root.value, folder.value, private.value):
        assert site.password not in str(error)
