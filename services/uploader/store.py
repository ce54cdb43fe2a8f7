"""Document stores: where uploaded extracts live for researchers to fetch.

One small interface, `DocumentStore.put`, so that other stores (Plone, WebDAV, S3) can follow the
embedded default `FolderStore`, which keeps the Plone layout on a local folder:
`<root>/data/repository/<code lower>/detection-extracts/<name>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


class StoreError(Exception):
    """A file could not be put into the store; `transient` says whether trying again may help."""

    transient = False


class UnsafeName(StoreError, ValueError):
    """A project code or file name that would reach outside the store."""


class SourceError(StoreError):
    """The staged file is missing or does not hold the content the event promised."""


class StoreUnavailable(StoreError):
    """The store cannot be written right now (permissions, disk full, mount gone)."""

    transient = True


@dataclass(frozen=True)
class StoredFile:
    location: str  # path inside the store, e.g. data/repository/nsbs/detection-extracts/x.zip
    url: str  # where a researcher finds it
    copied: bool = True  # False when the store already held the same content


class DocumentStore(Protocol):
    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        """Store `local` as `name` for project `code`, verifying `sha256`; replace an older version."""
        ...


def check_segment(value: str, what: str) -> str:
    """Refuse a path segment that is empty, hidden, a traversal, or carries separators/control chars."""
    if not value or not value.strip():
        raise UnsafeName(f"{what} is empty")
    if value in {".", ".."} or value.startswith("."):
        raise UnsafeName(f"{what} {value!r} must not start with '.'")
    bad = [c for c in value if c in "/\\" or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise UnsafeName(f"{what} {value!r} contains a path separator or control character")
    if os.path.isabs(value) or (len(value) > 1 and value[1] == ":"):
        raise UnsafeName(f"{what} {value!r} is an absolute path")
    return value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sizes_differ(stored: Path, local: Path) -> bool:
    """A cheap test before hashing a stored file; unknown when the staged file is gone."""
    try:
        return stored.stat().st_size != local.stat().st_size
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderStore:
    """The embedded store: a local folder with the Plone layout; writes are atomic and hash-verified."""

    def __init__(self, root: Path, base_url: str | None = None) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/") if base_url else None

    def location(self, code: str, name: str) -> str:
        code = check_segment(code, "project code").lower()
        name = check_segment(name, "file name")
        return f"data/repository/{code}/detection-extracts/{name}"

    def url(self, location: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{location}"
        return (self.root.resolve() / location).as_uri()

    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        check_segment(node, "node")
        location = self.location(code, name)
        return await asyncio.to_thread(self._put, Path(local), location, sha256.lower())

    def _target(self, location: str) -> Path:
        root = self.root.resolve()
        target = (root / location).resolve()
        if not target.is_relative_to(root):
            raise UnsafeName(f"{location!r} resolves outside the store {root}")
        return target

    def _put(self, local: Path, location: str, sha256: str) -> StoredFile:
        try:
            target = self._target(location)
            if target.is_file() and not _sizes_differ(target, local) and sha256_of(target) == sha256:
                return StoredFile(location, self.url(location), copied=False)
        except OSError as exc:
            raise StoreUnavailable(
                f"store {self.root}: cannot read {location}: {exc.strerror or exc}"
            ) from None
        if not local.is_file():
            raise SourceError(f"staged file {local} does not exist")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # mkdir may have followed a symlink planted in the store: check again
            target = self._target(location)
        except OSError as exc:
            raise StoreUnavailable(
                f"store {self.root}: cannot create folder for {location}: {exc.strerror or exc}"
            ) from None
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            self._copy(local, temp)
            copied = sha256_of(temp)
            if copied != sha256:
                source = sha256_of(local)
                if source != sha256:
                    raise SourceError(
                        f"staged file {local} has sha256 {source[:16]}…, the event says {sha256[:16]}…"
                    )
                raise StoreUnavailable(f"store {self.root}: the copy of {location} does not verify (sha256)")
            os.replace(temp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StoreUnavailable(
                f"store {self.root}: cannot write {location}: {exc.strerror or exc}"
            ) from None
        finally:
            temp.unlink(missing_ok=True)
        return StoredFile(location, self.url(location), copied=True)

    @staticmethod
    def _copy(source: Path, temp: Path) -> None:
        try:
            src = source.open("rb")
        except OSError as exc:
            raise SourceError(f"staged file {source} cannot be read: {exc.strerror or exc}") from None
        with src, temp.open("xb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
