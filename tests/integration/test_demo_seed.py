"""`otn-push demo seed`: the command line, extra nodes, the printed OTN_PUSH_NODES, the demo-only guard."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN, pg_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def tag() -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:8]
    yield tag
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        names = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"%_t{tag}_%")
        for row in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()


def otn_push(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from otn_push.cli import main; main()", *args],
        env={**os.environ, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_seed_fills_the_requested_number_of_nodes_and_says_how_to_use_them(tag: str) -> None:
    configured = {name: pg_url(f"otn_push_demo_t{tag}_{name.lower()}") for name in ("OTN", "ACT")}
    env = {"OTN_PUSH_NODES": ";".join(f"{k}={v}" for k, v in configured.items())}
    done = otn_push(env, "demo", "seed", "--detections", "2500", "--nodes", "3", "--seed", "4")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("OTN_PUSH_NODES="))
    nodes = dict(part.split("=", 1) for part in line.removeprefix("OTN_PUSH_NODES=").split(";"))
    assert list(nodes) == ["OTN", "ACT", "NEP"]
    assert nodes["NEP"].endswith(f"/otn_push_demo_t{tag}_nep")
    total = 0
    for url in nodes.values():
        conn = await asyncpg.connect(url)
        try:
            found = await conn.fetchval("SELECT count(*) FROM obis.otn_detections")
            assert await conn.fetchval("SELECT count(*) FROM obis.otn_resources") > 0
        finally:
            await conn.close()
        total += found
    assert total == 2500


def test_seed_refuses_databases_that_are_not_demo_ones(tag: str) -> None:
    env = {"OTN_PUSH_NODES": f"OTN={pg_url(f'prod_t{tag}_otn')};ACT={pg_url(f'prod_t{tag}_act')}"}
    done = otn_push(env, "demo", "seed", "--detections", "2000")
    assert done.returncode != 0
    assert f"prod_t{tag}_otn" in done.stderr and "not a demo database" in done.stderr


async def test_a_large_network_has_a_giant_latest_extract_and_the_notebook_baseline_makes_the_same_files(
    tag: str, tmp_path: Path
) -> None:
    """The mix the benchmark relies on; the notebook baseline makes the engine's CSV byte for byte."""
    from bench.extract_bench import extract_sizes
    from bench.notebook import make_extract
    from services.extractor.engine import build_extract

    configured = {name: pg_url(f"otn_push_demo_t{tag}_{name.lower()}") for name in ("OTN", "ACT", "FACT")}
    env = {"OTN_PUSH_NODES": ";".join(f"{k}={v}" for k, v in configured.items())}
    done = otn_push(env, "demo", "seed", "--detections", "40000", "--nodes", "3", "--seed", "7")
    assert done.returncode == 0, done.stderr
    sizes = await extract_sizes(configured, "OTN")
    code, year, type_code, rows = sizes[0]
    assert (code, year, type_code) == ("PROJ100", 2025, "u")  # the giant's latest year, mostly unknown tags
    assert rows > 0.15 * 40_000
    picks = [sizes[0][:3]] + [next(s[:3] for s in sizes if s[2] == t) for t in "tqs"]
    for code, year, type_code in picks:
        ours = await build_extract(configured, code, year, type_code, tmp_path / "ours")
        theirs = make_extract(configured, code, year, type_code, tmp_path)
        with zipfile.ZipFile(next(f.path for f in ours.files if f.kind == "zip")) as zf:
            expected = zf.read(f"{ours.basename}.csv")
        assert (tmp_path / f"{ours.basename}.csv").read_bytes() == expected, (code, year, type_code)
        assert theirs["rows"] == ours.rows
