"""Extract list rows written by people: what is unambiguous is normalised and said, everything else is
refused with the row and the reason, duplicates become one job carrying every row, and no code can
reach outside the staging folder whatever path reaches the extractor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.extractor.engine import ExtractInputError
from services.extractor.handlers import job_dir
from shared.extract_list import ExtractListError, ListRow, parse_extract, plan_jobs
from shared.messages import ExtractKey, ExtractRequested

PROJECTS = {"NSBS": "OTN", "SERC1": "ACT"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NSBS,２０２２,t", "not a number"),  # full-width digits
        ("NSBS,٢٠٢٢,t", "not a number"),  # Arabic-Indic digits
        ("NSBS,+2022,t", "not a number"),
        ("NSBS,-2022,t", "not a number"),
        ("NSBS,2022.0,t", "not a number"),
        ("NSBS,02022,t", "impossible"),
        ("NSBS,0,t", "impossible"),
        ("NSBS,,t", "not a number"),
        ("NSBS,2022,tq", "unknown extract type 'tq'"),
        ('NSBS,2022,"t"', "unknown extract type"),
        ("NSBS,2022,t;DROP TABLE obis.otn_detections", "unknown extract type"),
        ("NSBS,2022,t,", "4 comma-separated parts"),
        ("ＮＳＢＳ,2022,t", "characters other than"),  # full-width letters
        ("НSBS,2022,t", "characters other than"),  # a Cyrillic Н
        ("NSBS\u200b,2022,t", "characters other than"),  # zero-width space
        ("NSBS\x00,2022,t", "characters other than"),
        ("NSBS%2F..,2022,t", "characters other than"),
        ("..\\NSBS,2022,t", "characters other than"),
        ("/etc/passwd,2022,t", "characters other than"),
        (".NSBS,2022,t", "characters other than"),  # an empty node prefix is no prefix
        ("NSBS.,2022,t", "characters other than"),
        ("OTN..NSBS,2022,t", "characters other than"),
        ("A" * 33 + ",2022,t", "too long"),
    ],
)
def test_ambiguous_or_hostile_rows_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ExtractListError) as info:
        parse_extract(text, max_year=2025)
    assert reason in info.value.reason
    assert str(info.value).startswith(repr(text[:77] + "..." if len(text) > 80 else text))


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        ("NSBS,2022,t\n", ["removed stray spaces"]),
        (" nsbs , 2022 , T ", ["removed stray spaces", "code 'nsbs' upper-cased", "type 'T' lower-cased"]),
        ("otn.nsbs,2022,t", ["code 'otn.nsbs' upper-cased", "node prefix OTN removed"]),
    ],
)
def test_what_is_unambiguous_is_normalised_and_every_change_said(text: str, notes: list[str]) -> None:
    parsed = parse_extract(text, max_year=2025)
    assert parsed.key.label == "NSBS,2022,t"
    assert list(parsed.notes) == notes


def test_the_same_extract_listed_many_ways_is_one_job_completing_every_row() -> None:
    rows = [
        ListRow(10, "NSBS,2022,t"),
        ListRow(11, " nsbs,2022,T"),
        ListRow(12, "OTN.NSBS,2022,t"),
        ListRow(13, "NSBS,2022,t"),
        ListRow(14, "SERC1,2022,q"),
    ]
    jobs, rejected = plan_jobs(rows, PROJECTS, max_year=2025)
    assert rejected == []
    assert [(j.key.label, j.list_row_ids) for j in jobs] == [
        ("NSBS,2022,t", [10, 11, 12, 13]),
        ("SERC1,2022,q", [14]),
    ]
    assert sum("made once" in n for n in jobs[0].notes) == 3


def test_a_push_date_with_no_rows_plans_nothing() -> None:
    assert plan_jobs([], PROJECTS, max_year=2025) == ([], [])


@pytest.mark.parametrize("code", ["../../etc", "/etc", "NSBS/../../x", "..", "NSBS\x00", ".hidden", "A B"])
def test_a_hand_published_job_cannot_stage_outside_the_staging_folder(tmp_path: Path, code: str) -> None:
    msg = ExtractRequested(
        push_date=dt.date(2025, 9, 10), job_id=1, extract=ExtractKey(code=code, year=2022, type="t")
    )
    with pytest.raises(ExtractInputError, match="not a safe CODE,YEAR,TYPE"):
        job_dir(tmp_path / "staging", msg)
    ok = ExtractRequested(
        push_date=dt.date(2025, 9, 10), job_id=1, extract=ExtractKey(code="NSBS", year=2022, type="t")
    )
    assert (tmp_path / "staging").resolve() in job_dir(tmp_path / "staging", ok).parents


@pytest.mark.parametrize("year", [1850, 1959, dt.date.today().year + 2, 2200])
async def test_the_engine_refuses_the_years_the_list_refuses(tmp_path: Path, year: int) -> None:
    """Same range as `list add` (no node is contacted: the year is checked first)."""
    from services.extractor.engine import build_extract

    with pytest.raises(ExtractInputError, match=f"extract year {year} is impossible"):
        await build_extract({"OTN": "postgresql://nobody@127.0.0.1:1/x"}, "NSBS", year, "t", tmp_path / "o")
    assert not (tmp_path / "o").exists()
