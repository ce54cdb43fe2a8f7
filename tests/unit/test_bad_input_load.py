"""Files given to `otn-push load`: every bad file is refused with an error naming the file, the row and
column when there is one, and the problem; what is unambiguous (column order, UTF-16 with a BOM, macOS
zip metadata) is read. Parsing writes nothing, so a refused file leaves nothing half-written."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from otn_push.load import LoadError, parse_file
from otn_push.load.collect import Collected

NODES = {"OTN": "postgresql://127.0.0.1/unused", "ACT": "postgresql://127.0.0.1/unused"}
HEADER = [
    "collectioncode",
    "catalognumber",
    "scientificname",
    "detectedby",
    "receiver",
    "station",
    "tagname",
    "datecollected",
    "unqdetecid",
    "latitude",
    "longitude",
    "notes",
]
ROWS = [
    ["OTN.P1", "P1-1", "salmo salar", "ACT.P2", "123", "ST1", "A69-1-2", "2020-01-01 10:00:00", "P2-x-5",
     "44.5", "-63.2", "first"],
    ["OTN.P1", "P1-1", "salmo salar", "ACT.P2", "123", "ST1", "A69-1-2", "2020-01-02 11:30:00", "P2-x-6",
     "44.5", "-63.2", "café, second"],
    ["OTN.P1", "P1-2", "NA", "OTN.P3", "456", "NA", "A69-1-3", "2020-02-01T00:00:00Z", "P3-x-7",
     "45", "-62", ""],
]  # fmt: skip


def text(header: list[str], rows: list[list[str]]) -> str:
    lines = [",".join(_quote(v) for v in row) for row in [header, *rows]]
    return "\r\n".join(lines) + "\r\n"


def _quote(value: str) -> str:
    return f'"{value}"' if "," in value else value


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refused(path: Path) -> str:
    with pytest.raises(LoadError) as info:
        parse_file(path, NODES)
    message = str(info.value)
    assert message.startswith(path.name), message
    return message


def records(c: Collected) -> dict[str, object]:
    """What a load would write, independent of column order."""
    return {
        node: (sorted(b.detections.items()), sorted(b.releases.items()), sorted(b.animals.items()))
        for node, b in sorted(c.nodes.items())
    }


def test_a_good_file_reads(tmp_path: Path) -> None:
    c = parse_file(write(tmp_path / "good.csv", text(HEADER, ROWS)), NODES)
    assert c.rows == 3 and set(c.nodes) == {"OTN", "ACT"}
    assert len(c.nodes["ACT"].detections) == 2 and len(c.nodes["OTN"].detections) == 1


@pytest.mark.parametrize(
    "column", ["collectioncode", "detectedby", "receiver", "datecollected", "unqdetecid"]
)
def test_a_missing_required_column_is_named(tmp_path: Path, column: str) -> None:
    drop = HEADER.index(column)
    header = [h for i, h in enumerate(HEADER) if i != drop]
    rows = [[v for i, v in enumerate(r) if i != drop] for r in ROWS]
    path = write(tmp_path / f"no_{column}.csv", text(header, rows))
    if column == "detectedby":  # without it the file is no matched extract at all
        assert "not a detection extract" in refused(path)
    else:
        message = refused(path)
        assert f"column {column}" in message and "missing column" in message


def test_a_renamed_required_column_is_refused_naming_it(tmp_path: Path) -> None:
    header = ["receiver_sn" if h == "receiver" else h for h in HEADER]
    message = refused(write(tmp_path / "renamed.csv", text(header, ROWS)))
    assert "column receiver" in message and "missing column" in message


def test_shuffled_columns_and_known_aliases_read_the_same(tmp_path: Path) -> None:
    plain = parse_file(write(tmp_path / "plain.csv", text(HEADER, ROWS)), NODES)
    order = [11, 3, 0, 8, 7, 1, 10, 9, 2, 6, 5, 4]
    shuffled_header = [HEADER[i] for i in order]
    aliases = {"datecollected": "dateCollectedUTC", "latitude": "decimalLatitude", "unqdetecid": "unqDetecID"}
    shuffled_header = [aliases.get(h, h) for h in shuffled_header]
    shuffled_rows = [[row[i] for i in order] for row in ROWS]
    shuffled = parse_file(write(tmp_path / "shuffled.csv", text(shuffled_header, shuffled_rows)), NODES)
    assert records(shuffled) == records(plain)


def test_latin1_is_refused_naming_the_line_and_utf16_with_a_bom_is_read(tmp_path: Path) -> None:
    content = text(HEADER, ROWS)
    message = refused(write(tmp_path / "latin1.csv", content.encode("latin-1")))
    assert "not UTF-8" in message and "line 3" in message
    plain = parse_file(write(tmp_path / "utf8.csv", content), NODES)
    for encoding in ("utf-16", "utf-8-sig"):
        other = parse_file(write(tmp_path / f"{encoding}.csv", content.encode(encoding)), NODES)
        assert records(other) == records(plain)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("datecollected", "2020-13-45 25:00:00", "is not a time"),
        ("datecollected", "yesterday", "is not a time"),
        ("datecollected", "NA", "value is empty"),
        ("latitude", "44,5", "is not a number"),
        ("latitude", "44.5N", "is not a number"),
        ("longitude", "inf", "is not a finite number"),
        ("longitude", "nan(1)", "is not a number"),
        ("unqdetecid", "P2-x-five", "does not end with a detection number"),
        ("latitude", "999", "is outside -90 to 90"),
        ("longitude", "-180.5", "is outside -180 to 180"),
        ("collectioncode", "X;DROP TABLE", "is not letters, digits, - or _"),
    ],
)
def test_an_unreadable_value_names_row_and_column(
    tmp_path: Path, column: str, value: str, problem: str
) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][HEADER.index(column)] = value
    message = refused(write(tmp_path / "bad_value.csv", text(HEADER, rows)))
    assert f"row 2, column {column}" in message and problem in message


def test_a_row_with_a_missing_field_is_refused(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    del rows[2][-1]
    message = refused(write(tmp_path / "short.csv", text(HEADER, rows)))
    assert "row 3" in message and "11 fields, the header has 12" in message


def test_an_unclosed_quote_does_not_swallow_the_rest_of_the_file(tmp_path: Path) -> None:
    content = text(HEADER, ROWS).replace("first", '"first', 1)
    message = refused(write(tmp_path / "quote.csv", content))
    assert "row 1" in message and "not readable as CSV" in message  # runs into the next quote
    rows = [list(r) for r in ROWS]
    rows[1][HEADER.index("notes")] = '"second'
    message = refused(write(tmp_path / "quote_to_end.csv", text(HEADER, rows)))
    assert "row 2" in message and "never closed" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"\r\n\r\n", "empty file"),
        (b"a,b,c\r\n1,2,3\r\n", "not a detection extract"),
        (b"PK\x03\x04 not really", "not a detection extract"),
        (b"collectioncode,detectedby\x00\r\n", "NUL character on line 1"),
    ],
)
def test_empty_or_foreign_files_are_refused(tmp_path: Path, content: bytes, problem: str) -> None:
    assert problem in refused(write(tmp_path / "odd.csv", content))


def test_a_header_only_file_reads_as_no_rows(tmp_path: Path) -> None:
    c = parse_file(write(tmp_path / "empty_year.csv", text(HEADER, [])), NODES)
    assert c.rows == 0 and c.nodes == {}


def test_a_gigantic_line_is_refused_naming_the_row(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[2][HEADER.index("notes")] = "x" * (csv.field_size_limit() + 10)
    message = refused(write(tmp_path / "huge.csv", text(HEADER, rows)))
    assert "row 3" in message and "longer than" in message


def zipped(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ({}, "it holds nothing"),
        ({"data_description.txt": "about"}, "it holds nothing"),
        ({"a.csv": text(HEADER, ROWS), "b.csv": text(HEADER, ROWS)}, "it holds a.csv, b.csv"),
        ({"a.csv": text(HEADER, ROWS), "a.xlsx": b"\x00"}, "a.xlsx"),
        ({"inner.zip": b"PK"}, "inner.zip"),
        ({"a.csv": text(HEADER, ROWS), "readme.md": "hello"}, "readme.md"),
    ],
)
def test_archives_must_hold_one_csv_and_an_optional_description(
    tmp_path: Path, members: dict[str, bytes | str], problem: str
) -> None:
    message = refused(zipped(tmp_path / "odd.zip", members))
    assert "exactly one CSV" in message and problem in message


def test_an_archive_with_a_description_and_macos_metadata_reads(tmp_path: Path) -> None:
    members: dict[str, bytes | str] = {
        "p1_matched_detections_2020.csv": text(HEADER, ROWS),
        "data_description.txt": "columns...",
        "__MACOSX/._p1_matched_detections_2020.csv": b"\x00\x05\x16\x07",
    }
    c = parse_file(zipped(tmp_path / "p1.zip", members), NODES)
    assert c.rows == 3 and c.file == "p1.zip:p1_matched_detections_2020.csv"


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    assert "cannot read" in refused(write(tmp_path / "fake.zip", text(HEADER, ROWS)))
