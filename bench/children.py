"""The measured processes of the extract benchmark (run as `python -m bench.children MODE …`).

Each mode runs in its own process so that its peak resident memory is its own; it prints one JSON line.
- `floor`: PostgreSQL alone sending the extract's rows: `COPY (the extract's query) TO STDOUT` into a sink
  that drops them (one COPY per contributing node). Timed: the COPYs only.
- `notebook`: what a node manager's notebook does (bench/notebook.py): `pandas.read_sql` of the tables,
  the extract shaped in pandas, `DataFrame.to_csv`, zip. Timed: connect, read, shape, CSV, zip. Run under
  a memory cap by the parent: a MemoryError is reported as `oom`, not a crash.

The floor reuses the engine's own plan (project lookup, per-node counts, lookup temp tables), so its rows
and SQL are exactly those `otn-push extract` sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.notebook import make_extract
from services.extractor.engine import queries as q
from services.extractor.engine.build import (
    _check_inputs,
    _fill_temp,
    _find_project,
    _load_animals,
    _make_temps,
    _matched_plan,
    _open_all,
    _receiver_plan,
)
from shared.formats import Layout, extract_basename, layout


@dataclass
class Plan:
    layout: Layout
    basename: str
    queries: list[tuple[str, str]]  # (node, SQL) in node order
    keyed: bool  # several nodes: each query leads with the `_k` sort key, merged after


async def make_plan(
    conns: dict[str, asyncpg.Connection], code: str, year: int, type_code: str, fmt: str
) -> Plan:
    wanted, bare, t = _check_inputs(code, year, type_code, fmt)
    home = await _find_project(conns, bare, wanted)
    spec = q.ExtractSpec(bare, home, year, t, fmt)
    lay = layout(t, fmt)
    summary: dict[str, int] = {}
    warnings: list[str] = []
    if t == "t":
        contributing = await _matched_plan(conns, spec, summary, warnings)
        animals = await _load_animals(conns, {home: {bare}})
        for name in contributing:
            await _make_temps(conns[name])
            await _fill_temp(conns[name], "x_animals", animals, ["catalog", "sci", "common"])
        keyed = len(contributing) > 1
        queries = [
            (n, q.matched_query(spec, lay, with_releases=n == home, with_key=keyed)) for n in contributing
        ]
    else:
        await _receiver_plan(conns, spec, summary, warnings)
        keyed = False
        queries = [(home, q.receiver_query(spec, lay))]
    return Plan(lay, extract_basename(bare, t, year), queries, keyed)


async def floor(nodes: dict[str, str], code: str, year: int, type_code: str, fmt: str) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        conns = await _open_all(nodes, stack, fmt)
        plan = await make_plan(conns, code, year, type_code, fmt)
        sent = 0
        lines = 0

        async def sink(chunk: bytes) -> None:
            nonlocal sent, lines
            sent += len(chunk)
            lines += chunk.count(b"\n")

        started = time.perf_counter()
        for node, sql in plan.queries:
            await conns[node].copy_from_query(sql, output=sink, format="csv")
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": sent, "lines": lines}


def _scans(plan: dict[str, Any]) -> list[dict[str, str]]:
    """Every scan node of an EXPLAIN (FORMAT JSON) plan: type, relation and index."""
    found = []
    if "Relation Name" in plan or "Index Name" in plan:  # a Bitmap Index Scan names only its index
        found.append(
            {
                "node": plan["Node Type"],
                "relation": plan.get("Relation Name", ""),
                "index": plan.get("Index Name", ""),
            }
        )
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def explain(
    nodes: dict[str, str], extracts: list[tuple[str, int, str]], fmt: str
) -> list[dict[str, Any]]:
    """EXPLAIN every query the engine sends for each extract (counts, warnings, the COPY query)."""
    out: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        conns = await _open_all(nodes, stack, fmt)
        for code, year, type_code in extracts:
            for conn in conns.values():
                await conn.execute(q.TEMP_TABLES)  # empties the lookups of the previous extract
            plan = await make_plan(conns, code, year, type_code, fmt)
            _wanted, bare, t = _check_inputs(code, year, type_code, fmt)
            home = await _find_project(conns, bare, None)
            spec = q.ExtractSpec(bare, home, year, t, fmt)
            sent: list[tuple[str, str, str]] = []
            if t == "t":
                for node in conns:
                    sent.append((node, "stats", q.matched_stats_query(spec)))
                    sent.append((node, "unplaced", q.matched_unplaced_query(spec)))
                sent.append((home, "releases", q.release_count_query(spec)))
            else:
                sent.append((home, "stats", q.receiver_stats_query(spec)))
                sent.append((home, "unplaced", q.receiver_unplaced_query(spec)))
            sent += [(node, "extract", sql) for node, sql in plan.queries]
            for node, what, sql in sent:
                doc = json.loads(await conns[node].fetchval(f"EXPLAIN (FORMAT JSON) {sql}"))
                out.append(
                    {
                        "extract": f"{code},{year},{type_code}",
                        "node": node,
                        "query": what,
                        "scans": _scans(doc[0]["Plan"]),
                    }
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.children")
    parser.add_argument("mode", choices=["floor", "notebook", "explain"])
    parser.add_argument("--also", action="append", default=[], help="explain: more CODE,YEAR,TYPE")
    parser.add_argument("--nodes", required=True, help="JSON object: node name -> database URL")
    parser.add_argument("--code", required=True)
    parser.add_argument("--year", type=int, required=True)
    parser.add_argument("--type", dest="type_code", required=True)
    parser.add_argument("--format", dest="fmt", default="2025")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    nodes = json.loads(args.nodes)
    try:
        if args.mode == "explain":
            wanted = [(args.code, args.year, args.type_code)]
            for extra in args.also:
                code, year, type_code = extra.split(",")
                wanted.append((code, int(year), type_code))
            print(json.dumps({"explain": asyncio.run(explain(nodes, wanted, args.fmt))}), flush=True)
            return 0
        if args.mode == "floor":
            result = asyncio.run(floor(nodes, args.code, args.year, args.type_code, args.fmt))
        else:
            result = make_extract(nodes, args.code, args.year, args.type_code, args.out)
    except MemoryError:
        print(json.dumps({"oom": True}), flush=True)
        return 3
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
