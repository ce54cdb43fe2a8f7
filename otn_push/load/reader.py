"""Reading one OTN extract file (zip or CSV; 2025 or any legacy variant; matched or qualified).

Every header is mapped to a canonical field name; values are read as they appear in the wild (`NA` is
empty, `2017-04-08T05:34:00Z` is a UTC time, fractional seconds, serials with leading zeros kept as text).
A value that cannot be read raises `LoadError` naming the file, the data row and the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.formats import MATCHED_2025, QUALIFIED_2025


class LoadError(ValueError):
    """A file cannot be loaded; the message names the file, and the row and column when there is one."""

    def __init__(self, file: str, problem: str, row: int | None = None, column: str | None = None) -> None:
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}")
        self.file, self.row, self.column = file, row, column


MATCHED_ALIASES = {
    "collectioncode": "tag_project",
    "catalognumber": "catalog",
    "scientificname": "sci",
    "commonname": "common",
    "datelastmodified": "date_modified",
    "detectedby": "detected_by",
    "station": "station",
    "receiver": "receiver",
    "bottomdepth": "bottom_depth",
    "bottom_depth": "bottom_depth",
    "receiverdepth": "receiver_depth",
    "receiver_depth": "receiver_depth",
    "tagname": "tagname",
    "codespace": "codespace",
    "sensorname": "sensorname",
    "sensorraw": "sensorraw",
    "sensortype": "sensortype",
    "sensorvalue": "sensorvalue",
    "sensorunit": "sensorunit",
    "datecollectedutc": "datecollected",
    "datecollected": "datecollected",
    "uncorrecteddatecollectedutc": "uncorrected",
    "decimallongitude": "longitude",
    "longitude": "longitude",
    "decimallatitude": "latitude",
    "latitude": "latitude",
    "geometry": "geometry",
    "the_geom": "geometry",
    "st_setsrid_4326": "geometry",
    "localarea": "local_area",
    "local_area": "local_area",
    "citation": "citation",
    "unqdetecid": "unqdetecid",
    "contactpoc": "contact_poc",
    "contact_poc": "contact_poc",
    "contactpi": "contact_pi",
    "contact_pi": "contact_pi",
    "notes": "notes",
    "timezone": "timezone",
}
MATCHED_REQUIRED = (
    "tag_project",
    "catalog",
    "detected_by",
    "receiver",
    "tagname",
    "datecollected",
    "unqdetecid",
)

QUALIFIED_ALIASES = {
    "institutioncode": "institution",
    "collectioncode": "receiver_project",
    "datelastmodified": "date_modified",
    "datecollectedutc": "datecollected",
    "datecollected": "datecollected",
    "uncorrecteddatecollectedutc": "uncorrected",
    "trackercode": "tracker",
    "tagname": "tagname",
    "fieldnumber": "tagname",
    "catalognumber": "catalog",
    "station": "station",
    "receiverserial": "receiver",
    "collectornumber": "receiver",
    "decimallongitude": "longitude",
    "longitude": "longitude",
    "decimallatitude": "latitude",
    "latitude": "latitude",
    "rcvrcatnumber": "rcvrcatnumber",
    "sensortype": "sensortype",
    "sensorname": "sensorname",
    "sensorraw": "sensorraw",
    "geometry": "geometry",
    "the_geom": "geometry",
    "scientificname": "sci",
    "contactpoc": "contact_poc",
    "tag_contact_poc": "contact_poc",
    "contactpi": "contact_pi",
    "tag_contact_pi": "contact_pi",
    "notes": "notes",
    "timezone": "timezone",
}
QUALIFIED_REQUIRED = ("receiver_project", "tracker", "tagname", "catalog", "receiver", "datecollected")

_CAMEL = {c.lower(): c for c in (*MATCHED_2025, *QUALIFIED_2025)}
MISSING = frozenset({"", "NA", "N/A", "NULL", "null", "None", "nan", "NaN"})


@dataclass
class ExtractFile:
    """A file's header and raw rows; `kind` is `matched` or `qualified`."""

    name: str
    kind: str
    header: list[str]
    fields: dict[str, int]  # canonical field -> column index
    columns: dict[str, str]  # canonical field -> the file's column name (for messages)
    text: str

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        reader = _csv_reader(self.text)
        next(reader)
        number = 0
        try:
            for number, row in enumerate(reader, start=1):
                if not row:
                    continue
                yield number, row
        except csv.Error as exc:
            raise LoadError(self.name, _csv_problem(exc), number + 1) from None


def _csv_reader(text: str) -> Iterator[list[str]]:
    # strict: an unterminated quote is an error, not a field that swallows the rest of the file
    return csv.reader(io.StringIO(text, newline=""), strict=True)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a value longer than {csv.field_size_limit()} characters (a gigantic line?)"
    if "unexpected end of data" in text:
        return 'a quote (") opened here is never closed'
    return f"not readable as CSV: {text}"


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _decode(name: str, raw: bytes) -> str:
    """UTF-8 (with or without BOM), or UTF-16 when a BOM says so; anything else is refused, not guessed."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError(name, f"not valid UTF-16 text (byte {exc.start})") from None
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = _line_of(raw, exc.start)
            raise LoadError(
                name,
                f"not UTF-8 text (line {line}, byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); "
                "save the file as UTF-8",
            ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise LoadError(name, f"a NUL character on line {line}: binary data, not a CSV file")
    return text


def _read_text(path: Path) -> tuple[str, str]:
    name = path.name
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                # macOS adds __MACOSX/ resource forks when zipping: never data, always safe to ignore
                members = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
                csvs = [n for n in members if n.lower().endswith(".csv")]
                others = [n for n in members if n not in csvs and Path(n).name != "data_description.txt"]
                if len(csvs) != 1 or others:
                    found = ", ".join([*csvs, *others][:5]) or "nothing"
                    raise LoadError(name, f"a zip must hold exactly one CSV; it holds {found}")
                name = f"{path.name}:{csvs[0]}"
                raw = zf.read(csvs[0])
        else:
            raw = path.read_bytes()
    except (OSError, zipfile.BadZipFile) as exc:
        raise LoadError(path.name, f"cannot read: {exc}") from None
    return name, _decode(name, raw)


def open_extract(path: Path) -> ExtractFile:
    """Open a file and tell its kind from the header; missing required columns are refused here."""
    name, text = _read_text(path)
    try:
        first = next(_csv_reader(text), None)
    except csv.Error as exc:
        raise LoadError(name, f"header row: {_csv_problem(exc)}") from None
    if not first:
        raise LoadError(name, "empty file (no header row)")
    header = [h.strip() for h in first]
    lower = [h.lower() for h in header]
    required: tuple[str, ...]
    if "basisofrecord" in lower or "trackercode" in lower:
        kind, aliases, required = "qualified", QUALIFIED_ALIASES, QUALIFIED_REQUIRED
    elif "detectedby" in lower:
        kind, aliases, required = "matched", MATCHED_ALIASES, MATCHED_REQUIRED
    else:
        raise LoadError(name, "not a detection extract: the header has neither detectedBy nor trackerCode")
    fields: dict[str, int] = {}
    columns: dict[str, str] = {}
    for i, h in enumerate(lower):
        field = aliases.get(h)
        if field is not None and field not in fields:
            fields[field] = i
            columns[field] = header[i]
    camel = any(h != h.lower() for h in header)  # 2025 files name columns in camelCase
    for field in required:
        if field not in fields:
            wanted = [k for k, v in aliases.items() if v == field]
            shown = [_CAMEL.get(w, w) for w in wanted] if camel else wanted
            raise LoadError(name, f"missing column (one of {', '.join(shown)})", column=shown[0])
    return ExtractFile(name, kind, header, fields, columns, text)


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


class RowReader:
    """Typed access to one row's canonical fields, with errors naming file, row and column."""

    def __init__(self, f: ExtractFile) -> None:
        self.f = f
        self.number = 0
        self.row: list[str] = []

    def set(self, number: int, row: list[str]) -> None:
        if len(row) != len(self.f.header):
            raise LoadError(self.f.name, f"{len(row)} fields, the header has {len(self.f.header)}", number)
        self.number, self.row = number, row

    def fail(self, field: str, problem: str) -> LoadError:
        return LoadError(self.f.name, problem, self.number, self.f.columns.get(field, field))

    def text(self, field: str) -> str | None:
        i = self.f.fields.get(field)
        if i is None:
            return None
        value = self.row[i].strip()
        return None if value in MISSING else value

    def required(self, field: str) -> str:
        value = self.text(field)
        if value is None:
            raise self.fail(field, "value is empty")
        return value

    def time(self, field: str, required: bool = False) -> dt.datetime | None:
        value = self.required(field) if required else self.text(field)
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError:
            raise self.fail(field, f"{value!r} is not a time (YYYY-MM-DD HH:MM:SS)") from None

    def date(self, field: str) -> dt.date | None:
        value = self.time(field)
        return value.date() if value is not None else None

    def number_(self, field: str, low: float | None = None, high: float | None = None) -> float | None:
        value = self.text(field)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise self.fail(field, f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise self.fail(field, f"{value!r} is not a finite number")
        if (low is not None and number < low) or (high is not None and number > high):
            raise self.fail(field, f"{value!r} is outside {low:g} to {high:g}")
        return number

    def is_present(self, field: str) -> bool:
        return field in self.f.fields
