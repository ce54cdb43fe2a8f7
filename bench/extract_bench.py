"""The extract benchmark: for each network size, the largest extract made three ways, side by side.

- floor: `COPY (the extract's query) TO STDOUT` into nothing (bench/children.py `floor`);
- otn-push: the real `otn-push extract CODE YEAR TYPE --out DIR` command; its `seconds:` line gives the
  CSV phase (before compression) and the total (CSV + zip + Parquet);
- notebook: `pandas.read_sql`, `DataFrame.to_csv`, zip, under a memory cap (bench/children.py `notebook`).
Each runs in its own process; peak memory is that process's own (wait4). A warm-up COPY runs first so that
every method reads from a warm cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.measure import Measured, run_measured
from bench.seed import PUSH_DATE, bench_nodes, ensure_seeded
from shared.nodes import asyncpg_dsn
from shared.nodeschema import MATCH_ANIMAL, MATCH_SENTINEL, MATCH_UNQUALIFIED, D, L

ROOT = Path(__file__).resolve().parent.parent
RELATION_TYPE = {MATCH_UNQUALIFIED: "u", MATCH_SENTINEL: "s"}


@dataclass
class Method:
    name: str
    seconds: float | None
    rows: int | None
    peak_rss_mb: float | None
    wall: float | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float | None:
        if self.seconds and self.rows is not None:
            return self.rows / self.seconds
        return None


async def extract_sizes(nodes: dict[str, str], home: str) -> list[tuple[str, int, str, int]]:
    """Every extract listed for the push date with its row count, largest first (list order on ties)."""
    counts: Counter[tuple[str, int, str]] = Counter()
    for url in nodes.values():
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch(
                f"SELECT {D.project} AS array, {D.tracker} AS tracker, {D.relationship} AS rel, "
                f"extract(year FROM {D.datecollected})::int AS year, count(*) AS n "
                f"FROM {D.table} GROUP BY 1, 2, 3, 4"
            )
        finally:
            await conn.close()
        for r in rows:
            if r["rel"] == MATCH_ANIMAL:
                counts[(r["tracker"], r["year"], "t")] += r["n"]
                if r["tracker"] != r["array"]:
                    counts[(r["array"], r["year"], "q")] += r["n"]
            else:
                counts[(r["array"], r["year"], RELATION_TYPE[r["rel"]])] += r["n"]
    conn = await asyncpg.connect(asyncpg_dsn(nodes[home]))
    try:
        listed = await conn.fetch(
            f"SELECT {L.detection_extract} FROM {L.table} WHERE {L.push_date} = $1 ORDER BY {L.id}", PUSH_DATE
        )
    finally:
        await conn.close()
    found = []
    for i, row in enumerate(listed):
        code, year, type_code = row[0].split(",")
        found.append((i, code, int(year), type_code, counts[(code, int(year), type_code)]))
    found.sort(key=lambda f: (-f[4], f[0]))
    return [(code, year, t, n) for _i, code, year, t, n in found]


def _child_env(nodes: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
    env.update(
        OTN_PUSH_NODES=";".join(f"{k}={v}" for k, v in nodes.items()),
        OTN_PUSH_HOME_NODE=next(iter(nodes)),
        PYTHONPATH=str(ROOT),
        COLUMNS="200",
    )
    return env


def _child(mode: str, nodes: dict[str, str], extract: tuple[str, int, str], out: Path) -> list[str]:
    code, year, type_code = extract
    return [
        sys.executable,
        "-m",
        "bench.children",
        mode,
        "--nodes",
        json.dumps(nodes),
        "--code",
        code,
        "--year",
        str(year),
        "--type",
        type_code,
        "--out",
        str(out),
    ]


SECONDS_LINE = re.compile(r"^\s*seconds: (.*)$", re.M)
ROWS_LINE = re.compile(r": ([\d,]+) rows \(node ")


def _otn_push_timings(m: Measured) -> tuple[dict[str, float], int]:
    found = SECONDS_LINE.search(m.stdout)
    rows = ROWS_LINE.search(m.stdout)
    if m.code != 0 or not found or not rows:
        raise RuntimeError(
            f"otn-push extract failed (exit {m.code}):\n{m.stdout[-2000:]}\n{m.stderr[-2000:]}"
        )
    timings = {}
    for part in found.group(1).split(", "):
        phase, secs = part.rsplit(" ", 1)
        timings[phase] = float(secs)
    return timings, int(rows.group(1).replace(",", ""))


def run_size(
    detections: int,
    seed: int,
    node_count: int,
    server: str,
    mem_cap_mb: int,
    say: Any,
    work: Path,
    repeat: int = 3,
) -> dict[str, Any]:
    """Floor and otn-push `repeat` times each (best time, highest memory), the notebook once."""
    nodes = bench_nodes(server, detections, seed, node_count)
    reused, seeding = asyncio.run(ensure_seeded(nodes, detections, seed, say))
    sizes = asyncio.run(extract_sizes(nodes, next(iter(nodes))))
    code, year, type_code, expected = sizes[0]
    extract = (code, year, type_code)
    say(f"N={detections:,}: largest extract {code},{year},{type_code} ({expected:,} rows)")
    env = _child_env(nodes)
    logs = work / f"logs-{detections}"
    out = work / f"out-{detections}"
    out.mkdir(parents=True, exist_ok=True)

    run_measured(_child("floor", nodes, extract, out), env, out, logs, "warmup")
    cli = shutil.which("otn-push", path=str(Path(sys.executable).parent)) or "otn-push"
    floors: list[tuple[float, Measured]] = []
    runs: list[tuple[dict[str, float], Measured]] = []
    for i in range(repeat):  # interleaved, so that a busy moment of the machine hits both alike
        floor_m = run_measured(_child("floor", nodes, extract, out), env, out, logs, f"floor-{i}")
        floor_doc = floor_m.last_json()
        if floor_m.code != 0 or floor_doc is None:
            raise RuntimeError(f"floor failed (exit {floor_m.code}): {floor_m.stderr[-2000:]}")
        floors.append((floor_doc["seconds"], floor_m))
        push_out = out / f"otn-push-{i}"
        ours_m = run_measured(
            [cli, "extract", code, str(year), type_code, "--out", str(push_out)],
            env,
            out,
            logs,
            f"otn-push-{i}",
        )
        timings, rows = _otn_push_timings(ours_m)
        runs.append((timings, ours_m))
        sizes_on_disk = {p.suffix.lstrip("."): p.stat().st_size for p in push_out.iterdir() if p.is_file()}
        shutil.rmtree(push_out)
    best_floor, floor_m = min(floors, key=lambda f: f[0])
    floor = Method(
        "floor (COPY TO STDOUT)",
        best_floor,
        expected,
        max(m.peak_rss_mb for _s, m in floors),
        floor_m.wall,
        note=f"best of {repeat}",
        extra={"all_seconds": [f[0] for f in floors]},
    )
    rss = max(m.peak_rss_mb for _t, m in runs)
    csv_only = Method(
        "otn-push CSV (before compression)",
        min(t["csv"] for t, _m in runs),
        rows,
        rss,
        None,
        note=f"best of {repeat}; same processes as below",
        extra={"all_seconds": [t["csv"] for t, _m in runs]},
    )
    best, ours_m = min(runs, key=lambda r: r[0]["total"])
    ours = Method(
        "otn-push CSV-zip + Parquet",
        best["total"],
        rows,
        rss,
        ours_m.wall,
        note=f"best of {repeat}",
        extra={"timings": best, "all_seconds": [t["total"] for t, _m in runs], "files": sizes_on_disk},
    )

    nb_m = run_measured(
        _child("notebook", nodes, extract, out), env, out, logs, "notebook", mem_cap_mb=mem_cap_mb
    )
    nb_doc = nb_m.last_json()
    if nb_m.code == 0 and nb_doc and "seconds" in nb_doc:
        notebook = Method(
            "notebook (read_sql, to_csv, zip)",
            nb_doc["seconds"],
            nb_doc["rows"],
            nb_m.peak_rss_mb,
            nb_m.wall,
            extra=nb_doc,
        )
    else:
        why = "out of memory" if (nb_doc or {}).get("oom") or nb_m.code < 0 else f"failed (exit {nb_m.code})"
        notebook = Method(
            "notebook (read_sql, to_csv, zip)",
            None,
            None,
            nb_m.peak_rss_mb,
            nb_m.wall,
            note=f"{why} under a {mem_cap_mb:,} MB cap after {nb_m.wall:.1f}s",
            extra={"failed_after_seconds": nb_m.wall, "oom": why == "out of memory"},
        )
    shutil.rmtree(out, ignore_errors=True)

    ratios = {
        "csv_over_floor": csv_only.seconds / floor.seconds if csv_only.seconds and floor.seconds else None,
        "total_over_floor": ours.seconds / floor.seconds if ours.seconds and floor.seconds else None,
        "notebook_over_otn_push": notebook.seconds / ours.seconds
        if notebook.seconds and ours.seconds
        else None,
        # a notebook that ran out of memory had already taken this much longer than otn-push's whole run
        "notebook_over_otn_push_at_least": notebook.wall / ours.seconds
        if notebook.seconds is None and notebook.wall and ours.seconds
        else None,
    }
    return {
        "detections": detections,
        "seed": seed,
        "nodes": list(nodes),
        "reused_seed": reused,
        "seed_seconds": seeding,
        "extract": f"{code},{year},{type_code}",
        "rows": rows,
        "methods": [m.__dict__ | {"rows_per_s": m.rows_per_s} for m in (floor, csv_only, ours, notebook)],
        "ratios": ratios,
    }


def explain_extracts(
    detections: int, seed: int, node_count: int, server: str, work: Path
) -> list[dict[str, Any]]:
    """EXPLAIN of every engine query of the largest extract and of the smallest of each type."""
    nodes = bench_nodes(server, detections, seed, node_count)
    sizes = asyncio.run(extract_sizes(nodes, next(iter(nodes))))
    picks = [sizes[0][:3]]
    for t in "tqus":
        small = [s for s in sizes if s[2] == t and s[3] > 0]
        if small:
            picks.append(small[-1][:3])
    cmd = _child("explain", nodes, picks[0], work)
    for extra in picks[1:]:
        cmd += ["--also", ",".join(map(str, extra))]
    m = run_measured(cmd, _child_env(nodes), work, work / "logs-explain", "explain")
    doc = m.last_json()
    if m.code != 0 or doc is None:
        raise RuntimeError(f"explain failed (exit {m.code}): {m.stderr[-2000:]}")
    found: list[dict[str, Any]] = doc["explain"]
    for entry in found:
        year = entry["extract"].split(",")[1]
        entry["bad_seq_scans"] = [
            s["relation"]
            for s in entry["scans"]
            if s["node"] == "Seq Scan"
            and s["relation"].startswith("otn_detections")
            and s["relation"] != f"otn_detections_{year}"
        ]
    return found


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="otn-push-bench-"))
