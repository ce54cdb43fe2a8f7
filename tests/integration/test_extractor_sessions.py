"""Node connections reused across builds (NodeSessions): same files as fresh ones, fewer backends."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.extractor.engine import ExtractInputError, build_extract
from services.extractor.engine.sessions import NodeSessions
from shared.nodes import asyncpg_dsn
from shared.nodeschema import D as DETECTIONS
from tests.integration.test_extract_kinds import csv_lines, network

pytestmark = pytest.mark.integration
__all__ = ["network"]  # the fixture, imported for the tests below

EXTRACTS = [
    ("TAG", 2021, "t"),
    ("ARR", 2021, "q"),
    ("ARR", 2021, "u"),
    ("ARR", 2021, "s"),
    ("ARR2", 2021, "q"),
]


async def _backend_pid(sessions: NodeSessions, url: str) -> int | None:
    conn = sessions._idle.get(url)
    return None if conn is None else conn.get_server_pid()


async def test_reused_connections_give_the_same_files_as_fresh_ones(
    network: dict[str, str], tmp_path: Path
) -> None:
    sessions = NodeSessions()
    try:
        pids: set[int | None] = set()
        for i, (code, year, t) in enumerate(EXTRACTS * 2):
            fresh = await build_extract(network, code, year, t, tmp_path / f"fresh-{i}")
            reused = await build_extract(network, code, year, t, tmp_path / f"reused-{i}", sessions=sessions)
            # the lookups of the previous extract must not leak into the next one
            assert csv_lines(reused) == csv_lines(fresh), (code, year, t)
            assert [f.sha256 for f in reused.files] == [f.sha256 for f in fresh.files]
            pids.add(await _backend_pid(sessions, network["A"]))
        assert len(pids) == 1 and None not in pids  # one backend served every build
    finally:
        await sessions.close()
    assert sessions._idle == {}


async def test_a_failed_build_closes_its_connections(network: dict[str, str], tmp_path: Path) -> None:
    sessions = NodeSessions()
    try:
        await build_extract(network, "ARR", 2021, "u", tmp_path / "ok", sessions=sessions)
        kept = sessions._idle[network["A"]]
        with pytest.raises(ExtractInputError):
            await build_extract(network, "NOPE", 2021, "u", tmp_path / "bad", sessions=sessions)
        assert kept.is_closed() and sessions._idle == {}
        again = await build_extract(network, "ARR", 2021, "u", tmp_path / "again", sessions=sessions)
        assert again.rows == 2
    finally:
        await sessions.close()


async def test_an_idle_connection_the_server_dropped_is_replaced(
    network: dict[str, str], tmp_path: Path
) -> None:
    sessions = NodeSessions()
    try:
        await build_extract(network, "ARR", 2021, "u", tmp_path / "first", sessions=sessions)
        pid = await _backend_pid(sessions, network["A"])
        admin = await asyncpg.connect(asyncpg_dsn(network["A"]))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        result = await build_extract(network, "ARR", 2021, "u", tmp_path / "second", sessions=sessions)
        assert result.rows == 2
        assert await _backend_pid(sessions, network["A"]) not in (pid, None)
    finally:
        await sessions.close()


class CancelSwallowingProxy:
    """A TCP proxy to PostgreSQL that, once `swallow` is set, takes new connections and forwards nothing:
    a cancel request sent then is lost, as one is when it reaches the server just before its query."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.swallow = False
        self.swallowed = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.swallow:
            self.swallowed += 1
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _lock_waiters(admin: asyncpg.Connection) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
    )


async def test_a_cancelled_build_ends_even_when_its_query_was_not_cancelled(
    network: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM after the grace cancels the build: it must end though the node never got the cancel."""
    url = urlsplit(network["A"])
    proxy = CancelSwallowingProxy(url.port or 5432)
    port = await proxy.start()
    nodes = {**network, "A": urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{port}"))}
    sessions = NodeSessions()
    lock = await asyncpg.connect(asyncpg_dsn(network["A"]))
    try:
        await lock.execute("BEGIN")
        await lock.execute(f"LOCK TABLE {DETECTIONS.table} IN ACCESS EXCLUSIVE MODE")
        out = tmp_path / "out"
        build = asyncio.create_task(build_extract(nodes, "ARR", 2021, "u", out, sessions=sessions))
        for _ in range(600):
            await lock.execute("SELECT pg_stat_clear_snapshot()")
            if await _lock_waiters(lock) or build.done():
                break
            await asyncio.sleep(0.05)
        assert await _lock_waiters(lock) == 1, "the build never waited for the locked detections"
        proxy.swallow = True
        build.cancel()
        # not a timing assertion: before the fix the build never ended at all
        done, _ = await asyncio.wait([build], timeout=60)
        assert done, "the cancelled build still waits for its uncancelled query"
        assert build.cancelled()
        assert proxy.swallowed >= 1  # the cancel request really was lost
        assert list(out.iterdir()) == []  # no temporary or partial file left
        assert sessions._idle == {}  # the connection with a query in flight was not kept
    finally:
        await lock.execute("ROLLBACK")
        await lock.close()
        await sessions.close()
        await proxy.stop()
