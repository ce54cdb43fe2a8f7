"""Node connections reused across builds (NodeSessions): same files as fresh ones, fewer backends."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from services.extractor.engine import ExtractInputError, build_extract
from services.extractor.engine.sessions import NodeSessions
from shared.nodes import asyncpg_dsn
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
