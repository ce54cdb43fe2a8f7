"""Shared fixtures: the real OTN samples, throw-away node databases on the local PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from shared.nodes import connection, ensure_database, init_schema

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "otn"
PG_ADMIN = os.environ.get("OTN_PUSH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


# what tests may read from the environment; every other OTN_PUSH_* setting of the user's shell is hidden
TEST_VARIABLES = {
    "OTN_PUSH_REQUIRE_SAMPLES",
    "OTN_PUSH_REQUIRE_CHROMIUM",
    "OTN_PUSH_REQUIRE_STORES",
    "OTN_PUSH_TEST_PG",
    "OTN_PUSH_TEST_AMQP",
    "OTN_PUSH_REQUIRE_RABBIT_MANAGEMENT",
}


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the settings they need; a user's exported OTN_PUSH_* must not change their outcome."""
    for name in list(os.environ):
        if name.startswith("OTN_PUSH_") and name not in TEST_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """`../shared/samples/otn`: skipped when absent, a failure when OTN_PUSH_REQUIRE_SAMPLES=1."""
    if not (SAMPLES / "nsbs_matched_detections_2022.zip").is_file():
        reason = f"OTN sample files not found at {SAMPLES}"
        if os.environ.get("OTN_PUSH_REQUIRE_SAMPLES") == "1":
            pytest.fail(reason + " (OTN_PUSH_REQUIRE_SAMPLES=1)")
        pytest.skip(reason)
    return SAMPLES


def pg_url(database: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{database}"


NodeFactory = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
async def make_nodes() -> AsyncIterator[NodeFactory]:
    """Create fresh node databases with the OTN-style schema: `await make_nodes("OTN", "ACT")`."""
    created: list[str] = []

    async def factory(*names: str) -> dict[str, str]:
        tag = uuid.uuid4().hex[:8]
        nodes: dict[str, str] = {}
        for name in names or ("OTN", "ACT", "FACT"):
            url = pg_url(f"otn_push_test_{tag}_{name.lower()}")
            await ensure_database(name, url)
            created.append(url)
            async with connection(name, url) as conn:
                await init_schema(conn)
            nodes[name] = url
        return nodes

    yield factory
    await drop_databases(created)


async def drop_databases(urls: list[str]) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for url in urls:
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def sample_nodes(samples_dir: Path) -> AsyncIterator[dict[str, str]]:
    """Node databases OTN, ACT, FACT holding the four real zip samples, loaded once per test session."""
    from tests.sample_compare import load_samples

    tag = uuid.uuid4().hex[:8]
    nodes = {name: pg_url(f"otn_push_test_{tag}_samples_{name.lower()}") for name in ("OTN", "ACT", "FACT")}
    try:
        for name, url in nodes.items():
            await ensure_database(name, url)
            async with connection(name, url) as conn:
                await init_schema(conn)
        await load_samples(nodes, samples_dir)
        yield nodes
    finally:
        await drop_databases(list(nodes.values()))
