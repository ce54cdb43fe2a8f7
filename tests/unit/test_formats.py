"""Extract layouts, names and value conventions (shared.formats), and the COPY-to-CRLF stream."""

from __future__ import annotations

import csv
import io

import pytest

from services.extractor.engine.stream import CrlfWriter, merge_spools
from shared.formats import (
    FormatError,
    extract_basename,
    format_contacts,
    geometry_wkb,
    layout,
    parse_contacts,
    split_project_code,
)


@pytest.mark.parametrize(
    ("type_code", "fmt", "count", "first", "last"),
    [
        ("t", "2025", 29, "collectionCode", "contactPI"),
        ("q", "2025", 22, "basisOfRecord", "contactPI"),
        ("u", "2025", 18, "basisOfRecord", "geometry"),
        ("s", "2025", 22, "basisOfRecord", "contactPI"),
        ("t", "legacy", 34, "collectioncode", "contact_pi"),
        ("q", "legacy", 26, "basisofrecord", "scientificname"),
        ("u", "legacy", 22, "basisofrecord", "notes"),
    ],
)
def test_layouts(type_code: str, fmt: str, count: int, first: str, last: str) -> None:
    lay = layout(type_code, fmt)
    assert len(lay.columns) == len(set(lay.columns)) == count
    assert (lay.columns[0], lay.columns[-1]) == (first, last)


def test_unqualified_is_qualified_minus_the_tag_side_columns_in_the_same_order() -> None:
    q, u = layout("q").columns, layout("u").columns
    assert [c for c in q if c in u] == list(u)
    assert set(q) - set(u) == {"trackerCode", "scientificName", "contactPOC", "contactPI"}


def test_headers() -> None:
    assert layout("t").header().startswith(b"collectionCode,catalogNumber,organismID,")
    assert layout("t").header().endswith(b",contactPOC,contactPI\r\n")
    assert layout("q", "legacy").header().startswith(b"\xef\xbb\xbfbasisofrecord,")


def test_arrow_kinds_follow_the_spec() -> None:
    lay = layout("t")
    assert lay.arrow_kind("dateCollectedUTC") == "timestamp"
    assert lay.arrow_kind("dateLastModified") == "timestamp"
    assert lay.arrow_kind("receiver") == "string"
    assert lay.arrow_kind("sensorValue") == "double"
    assert lay.arrow_kind("geometry") == "binary"


def test_file_names() -> None:
    assert extract_basename("NSBS", "t", 2022) == "nsbs_matched_detections_2022"
    assert extract_basename("ACT.SERC1", "Q", 2017) == "serc1_qualified_detections_2017"
    assert extract_basename("x", "s", 2020) == "x_sentinel_tag_detections_2020"
    with pytest.raises(FormatError, match="'z'"):
        extract_basename("x", "z", 2020)
    with pytest.raises(FormatError, match="format"):
        layout("t", "1999")


def test_project_codes() -> None:
    assert split_project_code("OTN.NSBS") == ("OTN", "NSBS")
    assert split_project_code(" nsbs ") == (None, "NSBS")
    assert split_project_code("act.serc1") == ("ACT", "SERC1")


@pytest.mark.parametrize(
    "text",
    [
        "Manuel Dureuil (manuel.dureuil@dal.ca), Brendal Townsend (brendal.townsend@dal.ca)",
        "Debbie Abercrombie (debra.abercrombie@noaa.gov)",
        "Mike O'Brien (obrien@umces.edu)",
        "",
    ],
)
def test_contacts_round_trip(text: str) -> None:
    assert format_contacts(parse_contacts(text)) == text


def test_contacts_parse() -> None:
    assert parse_contacts("A B (a@b), C D (c@d)") == [("A B", "a@b"), ("C D", "c@d")]
    assert parse_contacts("Just A Name") == [("Just A Name", "")]


def test_geometry() -> None:
    ewkb = "0101000020E6100000B3CD8DE9099B4FC0FCE3BD6A651A4640"
    wkb = geometry_wkb(ewkb)
    assert wkb.hex().upper() == "0101000000B3CD8DE9099B4FC0FCE3BD6A651A4640"
    assert geometry_wkb(wkb.hex()) == wkb
    with pytest.raises(ValueError, match="WKB"):
        geometry_wkb("0102000000")


def convert(chunks: list[bytes]) -> tuple[bytes, int]:
    out = io.BytesIO()
    w = CrlfWriter(out)
    for c in chunks:
        w.feed(c)
    w.close()
    return out.getvalue(), w.rows


def test_crlf_only_on_record_ends_across_any_chunking() -> None:
    source = b'a,"x\ny",1\nb,,2\n"q""\n",z,3\nplain,row,4\n'
    expected = b'a,"x\ny",1\r\nb,,2\r\n"q""\n",z,3\r\nplain,row,4\r\n'
    for size in (1, 2, 3, 5, 7, len(source)):
        chunks = [source[i : i + size] for i in range(0, len(source), size)]
        assert convert(chunks) == (expected, 4), size
    rows = list(csv.reader(io.StringIO(expected.decode(), newline="")))
    assert rows[0][1] == "x\ny" and rows[2][0] == 'q"\n'


def test_a_stream_cut_inside_a_record_is_an_error() -> None:
    with pytest.raises(ValueError, match="inside a record"):
        convert([b'a,"open\n'])


def test_merge_spools_orders_by_key_and_strips_it() -> None:
    one = io.BytesIO(b'01,a,"x\ny"\n03,c,\n')
    two = io.BytesIO(b"02,b,\n04,d,\n")
    out = io.BytesIO()
    assert merge_spools([one, two], out) == 4
    assert out.getvalue() == b'a,"x\ny"\r\nb,\r\nc,\r\nd,\r\n'
