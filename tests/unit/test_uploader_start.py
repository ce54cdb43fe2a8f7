"""The uploader's start check of its document store: refused at once, unreachable asked again, then stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.uploader.app import check_store
from services.uploader.store import StoredFile, StoreError, StoreUnavailable
from shared.broker import StartupError


class FlakyStore:
    """A store whose `check` fails with the given errors in turn, then answers."""

    def __init__(self, *errors: StoreError) -> None:
        self.errors = list(errors)
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        if self.errors:
            raise self.errors.pop(0)

    async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
        raise AssertionError("no upload during the start check")


async def test_a_store_that_answers_after_a_while_is_waited_for() -> None:
    store = FlakyStore(StoreUnavailable("connection refused"), StoreUnavailable("connection refused"))
    await check_store(store, "webdav http://dav", wait=30, first_delay=0.01)
    assert store.checks == 3


async def test_a_store_that_never_answers_stops_the_uploader_naming_the_setting() -> None:
    store = FlakyStore(*[StoreUnavailable("webdav http://dav: ConnectError") for _ in range(1000)])
    with pytest.raises(StartupError) as stopped:
        await check_store(store, "webdav http://dav", wait=0.2, first_delay=0.01)
    assert str(stopped.value) == (
        "store webdav http://dav did not answer for 0.2 s (OTN_PUSH_STORE_START_WAIT): "
        "webdav http://dav: ConnectError"
    )
    assert 2 <= store.checks < 1000


async def test_a_refused_account_stops_it_at_once() -> None:
    store = FlakyStore(StoreError("plone http://site: the service account 'u' cannot log in"))
    with pytest.raises(StartupError, match="cannot log in"):
        await check_store(store, "plone http://site", wait=30, first_delay=0.01)
    assert store.checks == 1


async def test_a_store_without_a_check_is_not_asked() -> None:
    class Plain:
        async def put(self, local: Path, *, node: str, code: str, name: str, sha256: str) -> StoredFile:
            raise AssertionError

    await check_store(Plain(), "folder /x", wait=0)
