"""Parsing and planning of extract list entries (`CODE,YEAR,TYPE`)."""

from __future__ import annotations

import pytest

from shared.extract_list import ExtractListError, ListRow, parse_extract, plan_jobs

PROJECTS = {"NSBS": "OTN", "SERC1": "ACT", "PROJ67": "ACT", "V2LGMXSNAP": "FACT"}


def test_plain_entry_parses_without_notes() -> None:
    parsed = parse_extract("NSBS,2022,t", max_year=2022)
    assert parsed.key.label == "NSBS,2022,t"
    assert parsed.notes == ()


@pytest.mark.parametrize(
    ("text", "label", "note"),
    [
        (" NSBS , 2022 ,t ", "NSBS,2022,t", "stray spaces"),
        ("nsbs,2022,t", "NSBS,2022,t", "upper-cased"),
        ("NSBS,2022,T", "NSBS,2022,t", "lower-cased"),
        ("OTN.NSBS,2022,t", "NSBS,2022,t", "node prefix OTN removed"),
    ],
)
def test_unambiguous_variants_are_normalised_and_said(text: str, label: str, note: str) -> None:
    parsed = parse_extract(text, max_year=2022)
    assert parsed.key.label == label
    assert any(note in n for n in parsed.notes), parsed.notes


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NSBS,2022", "2 comma-separated parts"),
        ("NSBS,2022,t,x", "4 comma-separated parts"),
        ("NSBS;2022;t", "separated by ';'"),
        ("NSBS\t2022\tt", "separated by '\\t'"),
        ("NSBS 2022 t", "separated by spaces"),
        ("NSBS,20x2,t", "not a number"),
        ("NSBS,22,t", "impossible"),
        ("NSBS,1850,t", "impossible"),
        ("NSBS,2031,t", "impossible"),
        ("NSBS,2022,m", "unknown extract type 'm'"),
        ("NSBS,2022,", "unknown extract type ''"),
        ("../etc,2022,t", "characters other than"),
        ("NS/BS,2022,t", "characters other than"),
        ("NSBS'; DROP TABLE x;--,2022,t", "characters other than"),
        ("..,2022,t", "characters other than"),
        (",2022,t", "code is empty"),
        ("", "empty entry"),
    ],
)
def test_invalid_entries_are_rejected_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ExtractListError) as info:
        parse_extract(text, max_year=2022)
    assert reason in str(info.value)
    assert info.value.reason in str(info.value)


def test_plan_merges_duplicates_and_rejects_the_rest() -> None:
    rows = [
        ListRow(1, "NSBS,2022,t"),
        ListRow(2, "SERC1,2017,q"),
        ListRow(3, "nsbs,2022,t"),
        ListRow(4, "NOPE,2022,t"),
        ListRow(5, "NSBS,2022,x"),
        ListRow(6, "ACT.NSBS,2021,t"),
    ]
    jobs, rejected = plan_jobs(rows, PROJECTS, max_year=2022)
    by_label = {job.key.label: job for job in jobs}
    assert set(by_label) == {"NSBS,2022,t", "SERC1,2017,q"}
    assert by_label["NSBS,2022,t"].list_row_ids == [1, 3]
    assert by_label["NSBS,2022,t"].node == "OTN"
    assert by_label["SERC1,2017,q"].node == "ACT"
    assert any("upper-cased" in n for n in by_label["NSBS,2022,t"].notes)
    assert {r.list_row_ids: r.reason for r in rejected}.keys() == {(4,), (5,), (6,)}
    reasons = {r.list_row_ids[0]: r.describe() for r in rejected}
    assert "unknown project NOPE" in reasons[4]
    assert "list row 5" in reasons[5] and "unknown extract type" in reasons[5]
    assert "project NSBS is on node OTN" in reasons[6]


def test_manual_entries_have_no_row_ids() -> None:
    jobs, rejected = plan_jobs([ListRow(None, "PROJ67,2017,t")], PROJECTS, max_year=2025)
    assert [(j.key.label, j.list_row_ids) for j in jobs] == [("PROJ67,2017,t", [])]
    assert rejected == []


def test_unknown_code_while_a_node_is_down_becomes_a_job() -> None:
    rows = [ListRow(1, "ABC,2022,t"), ListRow(2, "ACT.XYZ,2022,q")]
    jobs, rejected = plan_jobs(rows, PROJECTS, max_year=2022, unreachable=["ACT"])
    assert rejected == []
    assert [(j.key.label, j.node) for j in jobs] == [("ABC,2022,t", ""), ("XYZ,2022,q", "ACT")]
    assert all(any("ACT unreachable" in n for n in j.notes) for j in jobs)
