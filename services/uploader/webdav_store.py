"""The WebDAV document store: extracts go to `<base>/<code lower>/detection-extracts/<name>` on a web folder.

Each file is PUT (streamed) to a temporary name beside its final one, read back and hashed, then MOVEd
over the final name, so a reader only ever sees a complete file; a file the server already holds with
the same content is not sent again. Transient faults (5xx, timeouts, dropped connections) raise
`StoreUnavailable`, which the uploader retries; refused credentials raise a plain `StoreError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

from services.uploader.store import (
    CHUNK,
    SourceError,
    StoredFile,
    StoreError,
    StoreUnavailable,
    check_segment,
)

log = logging.getLogger("otn_push.uploader")

FOLDER = "detection-extracts"
# statuses where the same request may well succeed later: besides every 5xx, request timeout, conflict
# (a collection removed or being created meanwhile), locked, too early, too many requests
TRANSIENT_STATUS = {408, 409, 423, 425, 429}
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>'
)

XML = {"Content-Type": "application/xml; charset=utf-8"}


def _shown(url: str) -> str:
    """A URL for messages: never with user information."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def temp_name_pattern(name: str) -> re.Pattern[str]:
    """The temporary names this store gives `name` while it is being uploaded."""
    return re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")


class WebDavStore:
    """A WebDAV collection holding `<code lower>/detection-extracts/<name>`; basic auth if a user is set."""

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise StoreError(f"webdav store: {_shown(url)!r} is not an http:// or https:// URL")
        self.base_url = url.rstrip("/")
        self.label = f"webdav store {_shown(self.base_url)}"
        self._auth = httpx.BasicAuth(user or "", password or "") if (user or password) else None
        self._timeout = timeout
        self._transport = transport

    def location(self, code: str, name: str) -> str:
        code = check_segment(code, "project code").lower()
        name = check_segment(name, "file name")
        return f"{code}/{FOLDER}/{name}"

    def url(self, location: str) -> str:
        return f"{self.base_url}/{'/'.join(quote(part, safe='') for part in location.split('/'))}"

    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        check_segment(node, "node")
        location = self.location(code, name)
        final = self.url(location)
        local, sha256 = Path(local), sha256.lower()
        async with self._client() as client:
            held = await self._size(client, final)
            if held is not None and not _sizes_differ(held, local):
                if await self._sha256(client, final) == sha256:
                    return StoredFile(location, final, copied=False)
            if held is None:
                await self._make_collections(client, location)
            try:
                size = local.stat().st_size
            except OSError as exc:
                raise SourceError(f"staged file {local} cannot be read: {exc.strerror or exc}") from None
            folder = final.rsplit("/", 1)[0]
            temp = f"{folder}/{quote(f'.{name}.{uuid.uuid4().hex[:12]}.tmp', safe='')}"
            try:
                await self._upload(client, local, temp, size, sha256, location)
                await self._move(client, temp, final)
                after = await self._size(client, final)
                if after is None or (after >= 0 and after != size):
                    found = "nothing" if after is None else f"{after} bytes"
                    raise StoreUnavailable(
                        f"{self.label}: after MOVE {location} holds {found}, not {size} bytes"
                    )
            except BaseException:
                await self._delete_quietly(client, temp)
                raise
            await self._sweep(client, folder, name)
        return StoredFile(location, final, copied=True)

    async def check(self) -> None:
        """At start: the collection exists and the account may read it (a wrong password is found here,
        not after every extract of a push has failed). Raises StoreError, or StoreUnavailable when the
        server cannot be reached right now."""
        async with self._client() as client:
            url = self.base_url + "/"
            response = await self._request(
                client, "PROPFIND", url, content=PROPFIND_BODY, headers={"Depth": "0"}
            )
            if response.status_code == 404:
                raise StoreError(
                    f"{self.label}: the collection does not exist (create it, or fix OTN_PUSH_WEBDAV_URL)"
                )
            self._expect(response, "PROPFIND", url, {207})

    def _client(self) -> httpx.AsyncClient:
        # one client per put: its connections belong to the running event loop, and a put's requests
        # share them; redirects are not followed (a moved store is a setting to fix, not to guess)
        return httpx.AsyncClient(
            auth=self._auth,
            timeout=self._timeout,
            transport=self._transport,
            follow_redirects=False,
            headers={"Accept-Encoding": "identity"},
        )

    async def _upload(
        self, client: httpx.AsyncClient, local: Path, temp: str, size: int, sha256: str, location: str
    ) -> None:
        """PUT `local` to `temp`, then read `temp` back: it must hold exactly what `sha256` promises."""
        sent = hashlib.sha256()
        response = await self._request(
            client,
            "PUT",
            temp,
            content=_read_chunks(local, size, sent),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        self._expect(response, "PUT", temp, {200, 201, 204})
        if sent.hexdigest() != sha256:
            raise SourceError(
                f"staged file {local} has sha256 {sent.hexdigest()[:16]}…, the event says {sha256[:16]}…"
            )
        if await self._sha256(client, temp) != sha256:
            raise StoreUnavailable(f"{self.label}: the uploaded copy of {location} does not verify (sha256)")

    async def _move(self, client: httpx.AsyncClient, temp: str, final: str) -> None:
        response = await self._request(client, "MOVE", temp, headers={"Destination": final, "Overwrite": "T"})
        if response.status_code == 207:  # a multi-status answer to MOVE reports a failure inside
            raise StoreUnavailable(f"{self.label}: MOVE {_shown(temp)} -> {_shown(final)} failed (207)")
        self._expect(response, "MOVE", temp, {201, 204})

    async def _make_collections(self, client: httpx.AsyncClient, location: str) -> None:
        """MKCOL the project's collection and its detection-extracts collection where missing."""
        code = location.split("/", 1)[0]
        for path in (code, f"{code}/{FOLDER}"):
            url = f"{self.url(path)}/"
            response = await self._request(client, "MKCOL", url)
            if response.status_code == 405:  # already there (RFC 4918 9.3.1)
                continue
            if response.status_code == 409:  # RFC 4918 9.3.1: a parent collection is missing
                raise StoreUnavailable(
                    f"{self.label}: MKCOL {_shown(url)} answered 409 Conflict: its parent collection is "
                    "missing (OTN_PUSH_WEBDAV_URL must name an existing collection)"
                )
            self._expect(response, "MKCOL", url, {200, 201})

    async def _size(self, client: httpx.AsyncClient, url: str) -> int | None:
        """The size of the file at `url`: None if there is none, -1 if the server does not say.

        PROPFIND rather than HEAD: a collection at a file's name must be refused, not replaced (a MOVE
        over it would delete everything in it)."""
        response = await self._request(
            client, "PROPFIND", url, content=PROPFIND_BODY, headers={"Depth": "0", **XML}
        )
        if response.status_code == 404:
            return None
        self._expect(response, "PROPFIND", url, {207})
        try:
            answer = ElementTree.fromstring(response.content)
        except ElementTree.ParseError:
            raise StoreUnavailable(f"{self.label}: PROPFIND {_shown(url)} answered unreadable XML") from None
        if answer.find(".//{DAV:}resourcetype/{DAV:}collection") is not None:
            raise StoreUnavailable(f"{self.label}: {_shown(url)} is a collection where a file should be")
        length = (answer.findtext(".//{DAV:}getcontentlength") or "").strip()
        return int(length) if length.isdigit() else -1

    async def _sha256(self, client: httpx.AsyncClient, url: str) -> str | None:
        """sha256 of the file at `url`, streamed; None if there is none."""
        digest = hashlib.sha256()
        try:
            async with client.stream("GET", url) as response:
                if response.status_code == 404:
                    return None
                self._expect(response, "GET", url, {200})
                async for chunk in response.aiter_bytes(CHUNK):
                    digest.update(chunk)
        except httpx.HTTPError as exc:
            self._unreachable("GET", url, exc)
        return digest.hexdigest()

    async def _sweep(self, client: httpx.AsyncClient, folder: str, name: str) -> None:
        """Delete temporary copies of `name` that an interrupted upload left (best effort).

        A dropped connection can leave the server writing a partial temp file after the client gave up
        on it, and a killed uploader leaves its own; they are found by name after a successful upload.
        """
        pattern = temp_name_pattern(name)
        try:
            response = await self._request(
                client,
                "PROPFIND",
                f"{folder}/",
                content=PROPFIND_BODY,
                headers={"Depth": "1", **XML},
            )
            if response.status_code != 207:
                return
            stale = [h for h in _hrefs(response.content) if pattern.fullmatch(_last_segment(h))]
        except (StoreError, ElementTree.ParseError) as exc:
            log.warning("%s: cannot list %s for leftover temporary files: %s", self.label, folder, exc)
            return
        for href in stale:
            await self._delete_quietly(client, f"{folder}/{quote(_last_segment(href), safe='')}")

    async def _delete_quietly(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            await client.request("DELETE", url)
        except httpx.HTTPError as exc:
            log.warning("%s: could not delete %s: %s", self.label, _shown(url), type(exc).__name__)

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            self._unreachable(method, url, exc)

    def _unreachable(self, method: str, url: str, exc: httpx.HTTPError) -> NoReturn:
        if isinstance(exc, httpx.TimeoutException):
            what = f"timed out after {self._timeout:g}s"
        else:
            what = f"failed: {type(exc).__name__}: {exc}" if str(exc) else f"failed: {type(exc).__name__}"
        raise StoreUnavailable(f"{self.label}: {method} {_shown(url)} {what}") from None

    def _expect(self, response: httpx.Response, method: str, url: str, ok: set[int]) -> None:
        status = response.status_code
        if status in ok:
            return
        said = f"{self.label}: {method} {_shown(url)} answered {status} {response.reason_phrase}".rstrip()
        if status in (401, 403):
            raise StoreError(
                f"{said}: the server refuses the account (check OTN_PUSH_WEBDAV_USER and "
                "OTN_PUSH_WEBDAV_PASSWORD, and that the account may write there)"
            )
        if 300 <= status < 400:
            where = response.headers.get("Location")
            moved = f" (to {_shown(where)})" if where else ""
            raise StoreError(f"{said}{moved}: point OTN_PUSH_WEBDAV_URL at the collection itself")
        if status >= 500 or status in TRANSIENT_STATUS:
            raise StoreUnavailable(said)
        raise StoreError(said)


def _sizes_differ(held: int, local: Path) -> bool:
    """A cheap test before hashing the stored file; unknown when the server or the staged file won't say."""
    try:
        return held >= 0 and held != local.stat().st_size
    except OSError:
        return False


async def _read_chunks(local: Path, size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """The first `size` bytes of `local` in chunks, hashed as they go; a file that shrank is refused."""
    try:
        handle = await asyncio.to_thread(local.open, "rb")
    except OSError as exc:
        raise SourceError(f"staged file {local} cannot be read: {exc.strerror or exc}") from None
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
            if not chunk:
                raise SourceError(f"staged file {local} shrank while it was uploaded")
            left -= len(chunk)
            digest.update(chunk)
            yield chunk
    finally:
        handle.close()


def _hrefs(body: bytes) -> list[str]:
    return [el.text or "" for el in ElementTree.fromstring(body).iter("{DAV:}href")]


def _last_segment(href: str) -> str:
    return unquote(urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1])
