"""Seeded benchmark networks in their own demo databases, reused when already seeded with the same input.

Databases are named `otn_push_demo_bench<N>s<seed>_<node>` (the demo prefix: `recreate_nodes` only drops
demo databases). A marker table, written after the seed committed, records what was seeded; a later run
with the same detections, seed, nodes and push date reuses the databases instead of seeding again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable

import asyncpg

from otn_push.demo.detections import GENERATOR_VERSION
from otn_push.demo.generate import generate_network
from otn_push.demo.network import build_network
from otn_push.demo.run import recreate_nodes
from shared.nodes import asyncpg_dsn

NODE_NAMES = ("OTN", "ACT", "FACT", "NEP", "PATH", "MIGRAMAR", "PIRAT", "SAF")
MARKER = "public.otn_push_bench_seed"
PUSH_DATE = dt.date(2026, 10, 15)  # fixed, so that the years (and the 2025 extracts) never move


def bench_nodes(server: str, detections: int, seed: int, count: int, tag: str = "") -> dict[str, str]:
    """Node name -> URL of the benchmark databases for one network (`server`: postgresql://host:port)."""
    if not 2 <= count <= len(NODE_NAMES):
        raise ValueError(f"--nodes must be between 2 and {len(NODE_NAMES)}, got {count}")
    return {
        name: f"{server}/otn_push_demo_bench{tag}{detections}s{seed}_{name.lower()}"
        for name in NODE_NAMES[:count]
    }


def fingerprint(nodes: dict[str, str], detections: int, seed: int, years: int | None) -> str:
    """What the generator would make now (projects, weights, deployments): a changed generator reseeds."""
    net = build_network(list(nodes), seed=seed, push_date=PUSH_DATE, detections=detections, years=years)
    plan: list[tuple[object, ...]] = [
        (p.code, p.node, p.kind, round(p.weight, 6)) for p in net.projects.values()
    ]
    plan.append((len(net.deployments), len(net.releases), len(net.animals), net.years[0], GENERATOR_VERSION))
    return hashlib.sha256(repr(plan).encode()).hexdigest()[:16]


async def _seeded_as(url: str) -> tuple[int, int, int, dt.date, str] | None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        row = await conn.fetchrow(f"SELECT detections, seed, nodes, push_date, network FROM {MARKER}")
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        return None
    finally:
        await conn.close()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4])


async def ensure_seeded(
    nodes: dict[str, str], detections: int, seed: int, say: Callable[[str], None], years: int | None = None
) -> tuple[bool, float]:
    """Seed the network unless already seeded identically; returns (reused, seconds spent seeding)."""
    first = next(iter(nodes.values()))
    network = fingerprint(nodes, detections, seed, years)
    if await _seeded_as(first) == (detections, seed, len(nodes), PUSH_DATE, network):
        say(f"reusing the seeded network of {detections:,} detections (seed {seed}, {len(nodes)} nodes)")
        return True, 0.0
    say(f"seeding {detections:,} detections (seed {seed}, {len(nodes)} nodes); 10M takes a few minutes")
    started = time.monotonic()
    await recreate_nodes(nodes)
    await generate_network(nodes, seed=seed, push_date=PUSH_DATE, detections=detections, years=years)
    for url in nodes.values():  # a node's tables are vacuumed; autovacuum must not start mid-measurement
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(first), timeout=10)
    try:
        await conn.execute(
            f"CREATE TABLE {MARKER} (detections bigint, seed integer, nodes integer, push_date date, "
            "network text, seeded_at timestamptz DEFAULT now())"
        )
        await conn.execute(
            f"INSERT INTO {MARKER} (detections, seed, nodes, push_date, network) VALUES ($1, $2, $3, $4, $5)",
            detections,
            seed,
            len(nodes),
            PUSH_DATE,
            network,
        )
    finally:
        await conn.close()
    return False, time.monotonic() - started
