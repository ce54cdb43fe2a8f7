"""`otn-push report`: a self-contained page with every plot drawn in headless Chromium, no console errors."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert

from otn_push.cli.report_cmd import write_report
from shared.db import EmailSent, Job, PushRun, make_engine
from shared.nodes import ensure_partitions
from shared.nodeschema import D, P, R
from shared.settings import Settings
from tests.chromium import check_page, chromium_or_skip, screenshot
from tests.integration.test_scheduler_cli import cli, environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PUSH = dt.date(2025, 6, 12)
T0 = dt.datetime(2025, 7, 10, 9, 0, tzinfo=dt.UTC)


async def seed_node(url: str, node: str, projects: dict[str, dict[int, int]], tags: int, new: int) -> None:
    """Projects of the node, `tags` tags, and unqualified detections per project and year."""
    conn = await asyncpg.connect(url)
    try:
        await ensure_partitions(conn, [2023, 2024, 2025])
        for code in projects:
            await conn.execute(f"INSERT INTO {P.table} ({P.code}, {P.node}) VALUES ($1, $2)", code, node)
        first = next(iter(projects))
        await conn.execute(
            "INSERT INTO obis.otn_animals (catalognumber, collectioncode) VALUES ($1, $2)",
            f"{first}-1",
            first,
        )
        for i in range(tags):
            await conn.execute(
                f"INSERT INTO {R.table} ({R.tagname}, {R.catalog}, {R.project}, {R.release_time}) "
                "VALUES ($1, $2, $3, '2023-01-01')",
                f"A69-9001-{i}",
                f"{first}-1",
                first,
            )
        detection = 0
        for code, years in projects.items():
            for year, count in years.items():
                for _ in range(count):
                    detection += 1
                    modified = PUSH - dt.timedelta(days=10) if detection <= new else dt.date(2024, 1, 5)
                    await conn.execute(
                        f"INSERT INTO {D.table} ({D.project}, {D.detection_id}, {D.receiver}, {D.tagname}, "
                        f"{D.datecollected}, {D.date_modified}, {D.relationship}) "
                        "VALUES ($1, $2, 'VR2W-1', 'A69-1-1', $3, $4, 'unqualified')",
                        code,
                        detection,
                        dt.datetime(year, 3, 1),
                        modified,
                    )
    finally:
        await conn.close()


async def seed_push(settings: Settings) -> None:
    engine = make_engine(settings.own_database_url)
    minute = dt.timedelta(minutes=1)
    try:
        async with engine.begin() as conn:
            run_id = (
                await conn.execute(
                    insert(PushRun)
                    .values(push_date=PUSH, state="completed", started_at=T0, finished_at=T0 + 9 * minute)
                    .returning(PushRun.id)
                )
            ).scalar_one()
            done = {
                "run_id": run_id,
                "push_date": PUSH,
                "state": "completed",
                "created_at": T0,
                "extracted_at": T0 + 2 * minute,
                "uploaded_at": T0 + 3 * minute,
                "notified_at": T0 + 5 * minute,
                "completed_at": T0 + 5 * minute,
            }
            for values in [
                {**done, "code": "NSBS", "year": 2024, "type": "t", "node": "OTN", "rows": 500,
                 "files": [{"name": "nsbs_matched_detections_2024.zip", "size": 2048},
                           {"name": "nsbs_matched_detections_2024.parquet", "size": 1024}]},
                {**done, "code": "SERC1", "year": 2024, "type": "q", "node": "ACT", "rows": 9000,
                 "files": [{"name": "serc1_qualified_detections_2024.zip", "size": 90_000}]},
                {"run_id": run_id, "push_date": PUSH, "created_at": T0, "code": "HFX", "year": 2024,
                 "type": "u", "node": "OTN", "state": "failed", "reason": "node OTN database unreachable"},
            ]:  # fmt: skip
                await conn.execute(insert(Job).values(**values))
            for project, recipient in [("NSBS", "pi@nsbs.example.org"), ("SERC1", "poc@serc.example.org")]:
                await conn.execute(
                    insert(EmailSent).values(
                        push_date=PUSH,
                        project=project,
                        recipient=recipient,
                        message_id=f"m-{project}",
                        status="simulated",
                        sent_at=T0 + 5 * minute,
                    )
                )
    finally:
        await engine.dispose()


async def test_report_page_draws_every_plot_in_chromium(
    make_nodes: Any, make_settings: Any, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN", "ACT")
    settings: Settings = make_settings(nodes=nodes, home_node="OTN")
    await seed_node(nodes["OTN"], "OTN", {"HFX": {2023: 3, 2024: 5}, "NSBS": {2024: 1}}, tags=4, new=2)
    await seed_node(nodes["ACT"], "ACT", {"SERC1": {2025: 2}}, tags=1, new=0)
    await seed_push(settings)

    out = tmp_path / "report.html"
    assert await write_report(settings, PUSH, out) == 3
    page = out.read_text()

    # self-contained: nothing to fetch (the SVG namespace is a name, not a download)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page)
    # every extract with its files, size and recipients; the failed one with its reason
    for text in (
        "NSBS,2024,t",
        "nsbs_matched_detections_2024.parquet",
        "3.0 KB",
        "pi@nsbs.example.org",
        "SERC1,2024,q",
        "poc@serc.example.org",
        "HFX,2024,u",
        "node OTN database unreachable",
    ):
        assert text in page, text
    # rows per project, largest first
    rows_plot = re.search(r'data-plot="rows-per-project".*?</svg>', page, re.DOTALL)
    assert rows_plot is not None
    assert re.findall(r"<title>(\w+): [\d,]+</title>", rows_plot.group(0)) == ["SERC1", "NSBS", "HFX"]
    # node figures: projects, tags, detections, new in this push; unqualified by year of the top projects
    otn = page[page.index("<h3>OTN</h3>") : page.index("<h3>ACT</h3>")]
    assert re.findall(r"<b>([\d,]+)</b>", otn) == ["2", "4", "9", "2"]
    assert "<title>HFX 2024: 5</title>" in otn and "<title>NSBS 2023: 0</title>" in otn
    plots = re.findall(r'data-plot="([^"]+)"', page)
    assert plots == [
        "by-type-state",
        "rows-per-project",
        "time-per-stage",
        "timeline",
        "unqualified-OTN",
        "unqualified-ACT",
    ]

    chromium = chromium_or_skip()
    checked = check_page(chromium, out)
    assert checked.console_errors == []
    assert checked.attributes.get("data-errors") == "0", checked.attributes
    assert checked.attributes.get("data-plots") == str(len(plots))
    assert checked.attributes.get("data-plots-drawn") == str(len(plots))
    shot = screenshot(chromium, out, ROOT / "test-artifacts" / "push-report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the CLI writes the same page
    code, said, err = await cli(environment(settings), "report", "--push-date", str(PUSH), "--out", str(out))
    assert code == 0, err
    assert "3 extracts" in said


def test_the_page_check_catches_errors_and_undrawn_plots(tmp_path: Path) -> None:
    """The check itself can fail: an uncaught error and a plot with nothing in it are both seen."""
    from otn_push.report.page import SELF_CHECK

    chromium = chromium_or_skip()
    broken = tmp_path / "broken.html"
    broken.write_text(
        f"<!DOCTYPE html><html><head>{SELF_CHECK}</head><body>"
        '<svg class="plot" data-plot="x" width="10" height="10"></svg>'
        "<script>throw new Error('boom')</script></body></html>"
    )
    checked = check_page(chromium, broken)
    assert any("boom" in line for line in checked.console_errors)
    assert checked.attributes["data-errors"] == "1"
    assert (checked.attributes["data-plots"], checked.attributes["data-plots-drawn"]) == ("1", "0")


async def test_report_out_writes_through_a_link_and_refuses_what_is_not_a_file(
    make_nodes: Any, make_settings: Any, tmp_path: Path
) -> None:
    nodes = await make_nodes("OTN")
    settings: Settings = make_settings(nodes=nodes, home_node="OTN")
    env = environment(settings)

    # no otn-push tables yet (a node database as the own one): one line saying what to do, and no file
    out = tmp_path / "r.html"
    bare = environment(make_settings(nodes=nodes, home_node="OTN", database_url=nodes["OTN"]))
    code, _said, err = await cli(bare, "report", "--push-date", str(PUSH), "--out", str(out))
    assert code == 1 and "no otn-push tables yet: run `otn-push db upgrade`" in err, err
    assert "Traceback" not in err and not out.exists()

    await seed_push(settings)
    # a symlink stays a link; its target gets the page
    target = tmp_path / "published" / "push.html"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.html"
    link.symlink_to(target)
    code, said, err = await cli(env, "report", "--push-date", str(PUSH), "--out", str(link))
    assert code == 0, err
    assert link.is_symlink() and "<!DOCTYPE html>" in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["push.html"]  # no temporary file left

    # a pipe (like a device) would be replaced by the rename: refused, left as it is
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _said, err = await cli(env, "report", "--push-date", str(PUSH), "--out", str(fifo))
    assert code == 1 and f"--out {fifo}: not a regular file" in err, err
    assert stat.S_ISFIFO(fifo.stat().st_mode)

    # a date without a push run: nothing to report, no file
    other = tmp_path / "other.html"
    code, _said, err = await cli(env, "report", "--push-date", "2020-02-02", "--out", str(other))
    assert code == 4 and "no push run for 2020-02-02 yet" in err and not other.exists(), err

    # missing folders are made, and said so (a mistyped path shows at once); none is left by a failure
    nested = tmp_path / "reports" / "2025" / "push.html"
    code, said, err = await cli(env, "report", "--push-date", str(PUSH), "--out", str(nested))
    assert code == 0 and nested.is_file() and f"created the folder {tmp_path / 'reports'}" in said, err
    code, said, err = await cli(
        env, "report", "--push-date", "2020-02-02", "--out", str(tmp_path / "no/r.html")
    )
    assert code == 4 and not (tmp_path / "no").exists(), err

    # - is stdout
    code, said, err = await cli(env, "report", "--push-date", str(PUSH), "--out", "-")
    assert code == 0, err
    assert said.startswith("<!DOCTYPE html>") and said.rstrip().endswith("</html>")
