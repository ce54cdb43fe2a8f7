"""`python -m bench` (`make bench SIZES=1000000,10000000`): the extract and push benchmarks, one report.

Prints rich tables and writes `bench/results/bench-<UTC time>.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.extract_bench import ROOT, explain_extracts, new_workdir, run_size
from shared.nodes import asyncpg_dsn
from shared.settings import Settings

console = Console(width=None if sys.stdout.isatty() else 150)
RESULTS = ROOT / "bench" / "results"


def _sizes(raw: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in raw.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes: expected numbers like 1000000,10000000, got {raw!r}"
        ) from None
    if not sizes or min(sizes) < 20_000:
        raise argparse.ArgumentTypeError(f"--sizes: each size must be at least 20000, got {raw!r}")
    return sorted(set(sizes))


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def extract_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="largest extract: otn-push vs floor vs notebook")
    for col in ("N", "extract", "method", "seconds", "rows/s", "peak RSS MB", "note"):
        table.add_column(col, justify="right" if col in ("seconds", "rows/s", "peak RSS MB") else "left")
    for res in results:
        for i, m in enumerate(res["methods"]):
            table.add_row(
                f"{res['detections']:,}" if i == 0 else "",
                f"{res['extract']} ({res['rows']:,} rows)" if i == 0 else "",
                m["name"],
                _fmt(m["seconds"], ".2f"),
                _fmt(m["rows_per_s"], ",.0f"),
                _fmt(m["peak_rss_mb"], ",.0f"),
                m["note"],
            )
        r = res["ratios"]
        table.add_row(
            "",
            "",
            "[bold]ratios[/]",
            "",
            "",
            "",
            f"CSV/floor {_fmt(r['csv_over_floor'], '.2f')}x, "
            f"CSV-zip+Parquet/floor {_fmt(r['total_over_floor'], '.2f')}x, "
            f"notebook/otn-push {_fmt(r['notebook_over_otn_push'], '.1f')}x",
            end_section=True,
        )
    return table


def targets(
    results: list[dict[str, Any]], explain: list[dict[str, Any]] | None, push: dict[str, Any] | None
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    by_n = {r["detections"]: r for r in results}
    largest = by_n[max(by_n)] if by_n else None
    if largest:
        r = largest["ratios"]
        n = f"N={largest['detections']:,}"
        found.append(
            {
                "target": "CSV within 1.5x floor",
                "at": n,
                "measured": r["csv_over_floor"],
                "met": r["csv_over_floor"] is not None and r["csv_over_floor"] <= 1.5,
            }
        )
        found.append(
            {
                "target": "CSV-zip + Parquet within 4x floor",
                "at": n,
                "measured": r["total_over_floor"],
                "met": r["total_over_floor"] is not None and r["total_over_floor"] <= 4,
            }
        )
        nb = largest["methods"][3]
        if nb["seconds"]:
            measured: object = r["notebook_over_otn_push"]
        else:
            at_least = r.get("notebook_over_otn_push_at_least")
            managed = [x for x in results if x["methods"][3]["seconds"]]
            text = nb["note"] + (f"; already {at_least:.1f}x otn-push's time" if at_least else "")
            if managed:
                best = max(managed, key=lambda x: x["detections"])
                text += (
                    f"; largest N it managed: {best['detections']:,} "
                    f"({best['ratios']['notebook_over_otn_push']:.1f}x)"
                )
            measured = text
        found.append(
            {
                "target": ">=10x faster than the notebook",
                "at": n,
                "measured": measured,
                "met": nb["seconds"] is None or r["notebook_over_otn_push"] >= 10,
            }
        )
        rss = largest["methods"][2]["peak_rss_mb"]
        found.append({"target": "extractor peak RSS < 300 MB", "at": n, "measured": rss, "met": rss < 300})
        if len(by_n) > 1:
            small = by_n[min(by_n)]["methods"][2]["peak_rss_mb"]
            found.append(
                {
                    "target": "peak RSS within 1.2x of the smallest N",
                    "at": n,
                    "measured": rss / small,
                    "met": rss <= 1.2 * small,
                }
            )
    if explain is not None:
        bad = [
            f"{e['extract']} {e['query']} on {e['node']}: {e['bad_seq_scans']}"
            for e in explain
            if e["bad_seq_scans"]
        ]
        found.append(
            {
                "target": "no seq scan of another detections table",
                "at": f"{len(explain)} queries",
                "measured": bad or "none",
                "met": not bad,
            }
        )
    if push is not None:
        one = push["runs"][0]
        found.append(
            {
                "target": "push overhead per extract < 50 ms median",
                "at": f"{one['extracts']} extracts",
                "measured": one["overhead_ms_median"],
                "met": one["overhead_ms_median"] < 50,
            }
        )
        medium = push.get("medium")
        if medium is not None and medium.get("speedup") is not None:
            low, high = medium["rows"]
            found.append(
                {
                    "target": "2 extractors >= 1.6x one (many medium extracts)",
                    "at": f"{medium['runs'][0]['extracts']} extracts of {low:,}-{high:,} rows",
                    "measured": medium["speedup"],
                    "met": medium["speedup"] >= 1.6,
                }
            )
    return found


def targets_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title="targets")
    for col in ("target", "at", "measured", "met"):
        table.add_column(col)
    for t in found:
        m = t["measured"]
        shown = f"{m:.2f}" if isinstance(m, float) else str(m)
        table.add_row(t["target"], t["at"], shown, "[green]yes[/]" if t["met"] else "[red]no[/]")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--sizes", type=_sizes, default=[1_000_000], help="detections per network, e.g. 1000000,10000000"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--notebook-mem-mb", type=int, default=6000, help="memory cap of the notebook process"
    )
    parser.add_argument(
        "--push-extracts", type=int, default=300, help="extracts in the push benchmark (0: skip)"
    )
    parser.add_argument(
        "--push-medium-extracts",
        type=int,
        default=60,
        help="medium extracts (20K-150K rows, 10M network) in the speed-up push (0: skip)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of floor and otn-push (best kept)")
    parser.add_argument("--no-extract", action="store_true", help="only the push benchmark")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder (service logs, files)")
    args = parser.parse_args(argv)

    base = Settings()
    server = asyncpg_dsn(next(iter(base.nodes.values()))).rsplit("/", 1)[0]
    work = new_workdir()
    started = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "note": "shared machine: other processes were running; figures are indicative",
        "extract": [],
    }

    def say(text: str) -> None:
        console.print(text, highlight=False)

    try:
        if not args.no_extract:
            for n in args.sizes:
                doc["extract"].append(
                    run_size(n, args.seed, args.nodes, server, args.notebook_mem_mb, say, work, args.repeat)
                )
            console.print(extract_table(doc["extract"]))
            if not args.no_explain:
                doc["explain"] = explain_extracts(max(args.sizes), args.seed, args.nodes, server, work)
        if args.push_extracts:
            from bench.push_bench import run_push_bench

            doc["push"] = run_push_bench(
                base, args.push_extracts, args.seed, work, say, medium_extracts=args.push_medium_extracts
            )
            console.print(push_table(doc["push"]))
            console.print(busy_table(doc["push"]))
            if "medium" in doc["push"]:
                console.print(push_table(doc["push"]["medium"], "medium extracts: the speed-up run"))
                console.print(busy_table(doc["push"]["medium"]))
    finally:
        if args.keep_work:
            console.print(f"work folder kept: {work}", highlight=False)
        else:
            shutil.rmtree(work, ignore_errors=True)
    doc["targets"] = targets(doc["extract"], doc.get("explain"), doc.get("push"))
    console.print(targets_table(doc["targets"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    console.print(f"results: {path}", highlight=False)
    return 0


def _pct100(share: float | None) -> float | None:
    return None if share is None else share * 100


def push_table(push: dict[str, Any], what: str = "") -> Table:
    runs = push["runs"]
    title = f"push of {runs[0]['extracts']} extracts ({runs[0]['rows']:,} rows) through the services"
    table = Table(title=title + (f": {what}" if what else ""))
    columns = ("extractors", "total s", "sum of builds s", "build median ms", "overhead/extract median ms",
               "p90 ms", "median ms: dispatch / announce / upload / notify share", "machine CPU busy",
               "note")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "note" else "right")
    for run in push["runs"]:
        stages = run["stages_ms_median"]
        table.add_row(
            str(run["extractors"]),
            f"{run['total_seconds']:.1f}",
            f"{run['build_seconds']:.1f}",
            _fmt(run["build_ms_median"], ".0f"),
            f"{run['overhead_ms_median']:.0f}",
            f"{run['overhead_ms_p90']:.0f}",
            " / ".join(
                f"{stages.get(k, float('nan')):.0f}" for k in ("dispatch", "announce", "upload", "notify")
            ),
            _fmt(_pct100(run.get("machine_cpu_busy_share")), ".0f") + f" % of {run.get('machine_cpus')}",
            run.get("note", ""),
        )
    if push.get("speedup") is not None:
        table.add_row(*[""] * 8, f"speed-up of the second extractor: {push['speedup']:.2f}x")
    return table


def busy_table(push: dict[str, Any]) -> Table:
    """How busy each service process was during each push: handling time / push wall time."""
    table = Table(title="service processes: share of the push's wall time spent handling messages")
    for col in ("extractors", "service", "busy share", "CPU s", "messages: count × median ms"):
        table.add_column(col, justify="right" if col in ("busy share", "CPU s") else "left")
    for run in push["runs"]:
        for i, (service, entry) in enumerate(sorted(run.get("services", {}).items())):
            table.add_row(
                str(run["extractors"]) if i == 0 else "",
                service,
                _fmt(entry["busy_share"] * 100 if entry["busy_share"] is not None else None, ".0f") + " %",
                _fmt(entry.get("cpu_seconds"), ".1f"),
                ", ".join(
                    f"{kind} {m['count']} × {m['median_ms']:.0f}" for kind, m in entry["messages"].items()
                ),
                end_section=i == len(run["services"]) - 1,
            )
        share = run.get("machine_cpu_busy_share")
        if share is not None:
            table.add_row(
                "",
                "whole machine",
                f"{share * 100:.0f} %",
                f"of {run['machine_cpus']} cores",
                "",
                end_section=True,
            )
    return table


if __name__ == "__main__":
    sys.exit(main())
