"""Node database check (the notebook's "Testing dblink connections"): reachable, latency, version."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shared.nodes import NodeUnavailable, connect
from shared.redact import redact_url


@dataclass
class NodeCheck:
    node: str
    url: str  # password masked
    reachable: bool
    latency: float | None = None  # seconds: connect + one query
    version: str | None = None
    error: str | None = None


async def check_node(node: str, url: str, limit: float = 5.0) -> NodeCheck:
    started = time.perf_counter()
    try:
        conn = await connect(node, url, connect_timeout=limit)
    except NodeUnavailable as exc:
        return NodeCheck(node, redact_url(url), False, error=str(exc))
    try:
        version = await asyncio.wait_for(conn.fetchval("SHOW server_version"), timeout=limit)
        latency = time.perf_counter() - started
    except (TimeoutError, OSError) as exc:
        return NodeCheck(node, redact_url(url), False, error=f"node {node}: no answer ({type(exc).__name__})")
    finally:
        await conn.close()
    return NodeCheck(node, redact_url(url), True, latency, str(version).split()[0])


async def check_nodes(nodes: dict[str, str], limit: float = 5.0) -> list[NodeCheck]:
    return list(await asyncio.gather(*(check_node(n, u, limit) for n, u in nodes.items())))


def node_flags(checks: list[NodeCheck], max_latency: float) -> list[str]:
    flags = []
    for c in checks:
        if not c.reachable:
            flags.append(c.error or f"node {c.node} unreachable")
        elif c.latency is not None and c.latency > max_latency:
            flags.append(f"node {c.node}: latency {c.latency * 1000:.0f} ms (> {max_latency * 1000:.0f} ms)")
    return flags
