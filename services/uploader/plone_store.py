"""The Plone document store: extracts as `File` items of a Plone site, through plone.restapi.

Layout `<site>/<path>/[<node lower>/]<code lower>/detection-extracts/<item>`; missing folders are
created as `Folder` items with a title. An item is found again by its title (the file name, which
both the JSON and the TUS upload set) or by the id Plone derives from the name (`x_2024.parquet` ->
`x_2024-parquet`, `.zip` kept), and replaced in place, so a retry or a re-push never adds `…-1`.
Small files go as JSON (base64), large ones through TUS in chunks (`@tus-upload`, `@tus-replace`),
streamed from disk. After an upload the item's size is checked and its content downloaded and hashed;
only then is `sha256:<hex>` written into the item's description, which is how a later put of the
same content is recognised cheaply (copied=False). Before a replace the description is cleared, so
it never vouches for content the item does not hold.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.uploader.store import (
    CHUNK,
    SourceError,
    StoredFile,
    StoreError,
    StoreUnavailable,
    check_segment,
    sha256_of,
)

log = logging.getLogger(__name__)

TUS_THRESHOLD = 10 * 1024 * 1024  # above this a file goes through TUS, not base64 JSON
TUS_CHUNK = 16 * 1024 * 1024  # one PATCH request of a TUS upload
TUS_RESUMES = 3  # broken PATCHes resumed (HEAD for the offset) within one put
SHA_MARK = re.compile(r"sha256:([0-9a-f]{64})")
FOLDER_TITLE = "Detection extracts"
JSON = {"Accept": "application/json"}


@dataclass(frozen=True)
class Item:
    url: str
    id: str
    title: str
    description: str


class PloneStore:
    """Puts extracts into a Plone site as the service account (basic auth)."""

    def __init__(
        self,
        site_url: str,
        user: str | None,
        password: str | None,
        *,
        path: str = "data/repository",
        node_folders: bool = False,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.site_url = site_url.rstrip("/")
        self.user = user
        self._auth = httpx.BasicAuth(user, password or "") if user else None
        self._password = password or ""
        self.path = [check_segment(p, "OTN_PUSH_PLONE_PATH segment") for p in path.strip("/").split("/") if p]
        self.node_folders = node_folders
        self.timeout = timeout
        self._transport = transport  # tests put a recording or faulty transport here

    # -- the DocumentStore interface -------------------------------------------------------------

    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        node = check_segment(node, "node")
        code = check_segment(code, "project code")
        name = check_segment(name, "file name")
        sha256 = sha256.lower()
        folders = [
            *self.path,
            *([node.lower()] if self.node_folders else []),
            code.lower(),
            "detection-extracts",
        ]
        titles = {len(folders) - 2: code.upper(), len(folders) - 1: FOLDER_TITLE}
        if self.node_folders:
            titles[len(folders) - 3] = node.upper()
        local = Path(local)
        async with self._client() as client:
            folder = await self._ensure_folders(client, folders, titles)
            item = await self._find(client, folder, name)
            if item is not None and await self._holds(client, item, local, sha256):
                return StoredFile(self._location(item.url), item.url, copied=False)
            await asyncio.to_thread(self._check_source, local, sha256)
            size = local.stat().st_size
            if item is not None:
                await self._set_description(client, item.url, "")
                url = await self._upload(client, folder, item.url, local, name, size)
            else:
                url = await self._upload(client, folder, None, local, name, size)
            try:
                await self._verify(client, url, size, sha256)
            except StoreError:
                if item is None:  # a new item that does not verify is removed: nothing half-written stays
                    await self._delete_quietly(client, url)
                raise
            await self._set_description(client, url, f"sha256:{sha256}")
        return StoredFile(self._location(url), url, copied=True)

    async def check(self) -> None:
        """At start: the site answers and the service account's password is right (`@login`, where the
        restapi offers it), so a wrong password stops the uploader instead of failing every extract."""
        async with self._client() as client:
            site = await self._request(
                client, "GET", self.site_url, "reading the site", (200, 401, 403), headers=JSON
            )
            if site.status_code != 200:
                # a Plone site's root is readable by the account; a private folder or another server is not
                who = self.user or "anonymous"
                raise StoreError(
                    f"plone {self.site_url}: HTTP {site.status_code} reading it as {who}: "
                    "OTN_PUSH_PLONE_URL must name the Plone site itself (e.g. https://host/Plone), which the "
                    "service account can read (check OTN_PUSH_PLONE_USER and OTN_PUSH_PLONE_PASSWORD)"
                )
            self._check_is_site(site)
            if self.user is None:
                return
            login = await self._request(
                client,
                "POST",
                f"{self.site_url}/@login",
                "logging in",
                (200, 401, 404, 405),
                headers=JSON,
                json={"login": self.user, "password": self._password},
            )
            if login.status_code == 401:
                raise StoreError(
                    f"plone {self.site_url}: the service account {self.user!r} cannot log in "
                    "(check OTN_PUSH_PLONE_USER and OTN_PUSH_PLONE_PASSWORD)"
                )

    def _check_is_site(self, answer: httpx.Response) -> None:
        """The URL names the Plone site itself: not Zope's root (a web page) nor a folder inside the site,
        under which the store would make `data/repository` a second time."""
        where = f"plone {self.site_url}"
        kind = answer.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        if kind != "application/json":
            raise StoreError(
                f"{where}: answered {kind}, not plone.restapi's JSON: OTN_PUSH_PLONE_URL must name the Plone "
                "site (e.g. https://host/Plone, not the Zope root) and the site needs plone.restapi"
            )
        try:
            kind = answer.json().get("@type")
        except (ValueError, AttributeError):
            kind = None
        if kind not in (None, "Plone Site"):
            now = "/".join(self.path) or "the site itself"
            raise StoreError(
                f"{where}: is a {kind} inside the site, not the Plone site: OTN_PUSH_PLONE_URL names the "
                f"site and OTN_PUSH_PLONE_PATH the folder under it (now {now})"
            )

    # -- HTTP ------------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            auth=self._auth,
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport,
            follow_redirects=False,
        )

    async def _request(
        self, client: httpx.AsyncClient, method: str, url: str, doing: str, ok: tuple[int, ...], **kw: Any
    ) -> httpx.Response:
        """One request; transport faults and 5xx are transient (StoreUnavailable), the rest are not."""
        try:
            response = await client.request(method, url, **kw)
        except httpx.TimeoutException:
            raise StoreUnavailable(f"plone {url}: timed out while {doing}") from None
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"plone {url}: {type(exc).__name__} while {doing}: {exc}") from None
        if response.status_code in ok:
            return response
        raise self._status_error(response, doing)

    def _status_error(self, response: httpx.Response, doing: str) -> StoreError:
        url = str(response.request.url)
        status = response.status_code
        if status >= 500 or status in (408, 429):
            return StoreUnavailable(f"plone {url}: HTTP {status} while {doing}")
        if status in (401, 403):
            who = (
                f"service account {self.user!r}" if self.user else "anonymous access (no OTN_PUSH_PLONE_USER)"
            )
            return StoreError(f"plone {url}: HTTP {status}, {who} is not allowed {doing}")
        return StoreError(f"plone {url}: HTTP {status} while {doing}: {_message(response)}")

    # -- folders and items -----------------------------------------------------------------------

    async def _ensure_folders(
        self, client: httpx.AsyncClient, folders: list[str], titles: dict[int, str]
    ) -> str:
        """The URL of the last folder, creating the missing ones from the deepest existing one down."""
        site = await self._request(client, "GET", self.site_url, "reading the site", (200, 404), headers=JSON)
        if site.status_code == 404:
            raise StoreError(
                f"plone {self.site_url}: no Plone site there (HTTP 404; check OTN_PUSH_PLONE_URL)"
            )
        self._check_is_site(site)
        urls = [f"{self.site_url}/{'/'.join(folders[: i + 1])}" for i in range(len(folders))]
        existing = -1
        for i in range(len(urls) - 1, -1, -1):
            found = await self._request(client, "GET", urls[i], "reading a folder", (200, 404), headers=JSON)
            if found.status_code == 200:
                existing = i
                break
        for i in range(existing + 1, len(urls)):
            parent = urls[i - 1] if i else self.site_url
            title = titles.get(i, folders[i].capitalize())
            body = {"@type": "Folder", "id": folders[i], "title": title}
            created = await self._request(
                client,
                "POST",
                parent,
                f"to create folder {folders[i]!r}",
                (201, 400),
                headers=JSON,
                json=body,
            )
            if created.status_code == 400:
                # a folder created by a request that timed out on our side, or by a parallel uploader
                again = await self._request(
                    client, "GET", urls[i], "reading a folder", (200, 404), headers=JSON
                )
                if again.status_code != 200:
                    raise self._status_error(created, f"creating folder {folders[i]!r}")
            log.info("created Plone folder %s", urls[i])
        return urls[-1]

    async def _find(self, client: httpx.AsyncClient, folder: str, name: str) -> Item | None:
        """The item holding `name`: title equal to the name, else the id Plone gives the name."""
        ids = {name.lower(), plone_id(name).lower()}
        by_title: Item | None = None
        by_id: Item | None = None
        url: str | None = f"{folder}?b_size=200"
        while url:
            page = await self._request(client, "GET", url, "listing a folder", (200,), headers=JSON)
            data = page.json()
            for entry in data.get("items", []):
                if entry.get("@type") != "File":
                    continue
                item_url = str(entry["@id"])
                item = Item(
                    item_url,
                    item_url.rsplit("/", 1)[1],
                    entry.get("title") or "",
                    entry.get("description") or "",
                )
                if item.id.lower() in ids and (by_id is None or item.id == plone_id(name)):
                    by_id = item
                elif item.title == name and by_title is None:
                    by_title = item
            url = (data.get("batching") or {}).get("next")
        return by_id or by_title

    async def _holds(self, client: httpx.AsyncClient, item: Item, local: Path, sha256: str) -> bool:
        """The item already holds this content: its verified sha256 is recorded and the size agrees."""
        mark = SHA_MARK.search(item.description)
        if not mark or mark.group(1) != sha256:
            return False
        try:
            local_size = (await asyncio.to_thread(local.stat)).st_size
        except OSError:
            return True  # staged file gone (a late redelivery): the recorded hash is what we have
        return await self._stored_size(client, item.url) == local_size

    async def _stored_size(self, client: httpx.AsyncClient, url: str) -> int | None:
        got = await self._request(client, "GET", url, "reading an item", (200,), headers=JSON)
        file = got.json().get("file") or {}
        size = file.get("size")
        return int(size) if isinstance(size, int) else None

    async def _set_description(self, client: httpx.AsyncClient, url: str, description: str) -> None:
        await self._request(
            client,
            "PATCH",
            url,
            "to edit an item",
            (204, 200),
            headers=JSON,
            json={"description": description},
        )

    async def _delete_quietly(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            await self._request(client, "DELETE", url, "to delete an item", (204, 200, 404), headers=JSON)
        except StoreError as exc:
            log.warning("could not remove the unverified item %s: %s", url, exc)

    # -- upload and verification -----------------------------------------------------------------

    async def _upload(
        self, client: httpx.AsyncClient, folder: str, item: str | None, local: Path, name: str, size: int
    ) -> str:
        """Create (item None) or replace the item; the item's URL."""
        if size > TUS_THRESHOLD:
            return await self._upload_tus(client, folder, item, local, name, size)
        data = await asyncio.to_thread(_read_base64, local)
        file = {"data": data, "encoding": "base64", "filename": name, "content-type": content_type(name)}
        if item is None:
            body = {"@type": "File", "title": name, "file": file}
            created = await self._request(
                client, "POST", folder, "to add an item", (201,), headers=JSON, json=body
            )
            return str(created.json()["@id"])
        await self._request(
            client, "PATCH", item, "to edit an item", (204, 200), headers=JSON, json={"file": file}
        )
        return item

    async def _upload_tus(
        self, client: httpx.AsyncClient, folder: str, item: str | None, local: Path, name: str, size: int
    ) -> str:
        endpoint = f"{item}/@tus-replace" if item else f"{folder}/@tus-upload"
        metadata = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode()}"
            for key, value in (("filename", name), ("content-type", content_type(name)))
        )
        headers = {**JSON, "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": metadata}
        doing = "to replace an item" if item else "to add an item"
        started = await self._request(client, "POST", endpoint, doing, (201,), headers=headers)
        upload = started.headers.get("Location")
        if not upload:
            raise StoreError(f"plone {endpoint}: the TUS upload was accepted without a Location")
        offset, resumes, final = 0, 0, None
        while offset < size:
            length = min(TUS_CHUNK, size - offset)
            patch = {
                **JSON,
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            }
            try:
                sent = await self._request(
                    client,
                    "PATCH",
                    upload,
                    "uploading",
                    (204,),
                    headers=patch,
                    content=_slice(local, offset, length),
                )
            except StoreUnavailable as exc:
                resumes += 1
                if resumes > TUS_RESUMES:
                    raise
                log.warning("TUS upload of %s broke at %d of %d bytes, resuming: %s", name, offset, size, exc)
                offset = await self._tus_offset(client, upload, exc)
                continue
            offset = int(sent.headers.get("Upload-Offset", offset + length))
            final = sent.headers.get("Location")
        if item:
            return item
        if not final:
            raise StoreUnavailable(f"plone {upload}: the TUS upload ended without the new item's Location")
        return final

    async def _tus_offset(self, client: httpx.AsyncClient, upload: str, cause: StoreUnavailable) -> int:
        """Where the server's copy of a broken upload ends; the upload cannot be resumed when unknown."""
        headers = {**JSON, "Tus-Resumable": "1.0.0"}  # without Accept JSON the service is not reached
        head = await self._request(client, "HEAD", upload, "resuming an upload", (200, 404), headers=headers)
        if head.status_code == 404:
            # finished after all (the server completed the item and removed the upload), or expired:
            # the put is retried from the start, where the item is found if it exists
            raise cause
        return int(head.headers["Upload-Offset"])

    async def _verify(self, client: httpx.AsyncClient, url: str, size: int, sha256: str) -> None:
        stored = await self._stored_size(client, url)
        if stored != size:
            raise StoreUnavailable(
                f"plone {url}: the uploaded item holds {stored} bytes, the file has {size}"
            )
        digest = hashlib.sha256()
        download = f"{url}/@@download/file"
        try:
            async with client.stream("GET", download) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response, "downloading the uploaded item")
                async for chunk in response.aiter_bytes(CHUNK):
                    digest.update(chunk)
        except httpx.TimeoutException:
            raise StoreUnavailable(f"plone {download}: timed out while verifying") from None
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"plone {download}: {type(exc).__name__} while verifying: {exc}") from None
        if digest.hexdigest() != sha256:
            raise StoreUnavailable(f"plone {url}: the uploaded item does not verify (sha256 differs)")

    @staticmethod
    def _check_source(local: Path, sha256: str) -> None:
        if not local.is_file():
            raise SourceError(f"staged file {local} does not exist")
        try:
            actual = sha256_of(local)
        except OSError as exc:
            raise SourceError(f"staged file {local} cannot be read: {exc.strerror or exc}") from None
        if actual != sha256:
            raise SourceError(f"staged file {local} has sha256 {actual[:16]}…, the event says {sha256[:16]}…")

    def _location(self, url: str) -> str:
        return url[len(self.site_url) + 1 :] if url.startswith(self.site_url + "/") else url


def plone_id(name: str) -> str:
    """The id Plone's name chooser gives a file name: the last dot becomes '-' unless a known extension.

    Only a hint for finding items made elsewhere; the store records the id the server really gave.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() in KEPT_EXTENSIONS:
        return name
    return f"{stem}-{ext}"


# extensions Plone's id normaliser keeps (those its mimetypes registry knows); .parquet is not one
KEPT_EXTENSIONS = {"zip", "csv", "txt", "pdf", "gz", "json", "xml", "html"}


def content_type(name: str) -> str:
    if name.lower().endswith(".zip"):
        return "application/zip"
    if name.lower().endswith(".csv"):
        return "text/csv"
    return "application/octet-stream"


def _read_base64(local: Path) -> str:
    try:
        return base64.b64encode(local.read_bytes()).decode("ascii")
    except OSError as exc:
        raise SourceError(f"staged file {local} cannot be read: {exc.strerror or exc}") from None


async def _slice(local: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of `local` from `offset`, a megabyte at a time (never the whole file in memory)."""
    with local.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
            if not chunk:
                raise SourceError(f"staged file {local} ended before {offset + length} bytes")
            left -= len(chunk)
            yield chunk


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:200]
    return str(data)[:200]
