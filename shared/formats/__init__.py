"""OTN detection extract layouts: type codes, file names, column lists and their Arrow types.

See `reference/extract-formats.md`. The 2025 layouts are the published ones; the legacy (pre-2025)
unqualified and sentinel layouts have no public sample and are our decision, derived like the 2025 ones:
legacy unqualified = the legacy qualified layout without `trackercode`, `scientificname`,
`tag_contact_pi`, `tag_contact_poc`; legacy sentinel = the legacy qualified layout (`trackercode` = the
project owning the test tag). Parquet types follow §6; for the legacy layouts (not specified) the date
columns are `timestamp[ms]`, `yearcollected`/`monthcollected`/`daycollected`/`julianday` `int32`,
`timeofday` and the other numbers `double`, `the_geom` `binary`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.formats.values import (
    format_contacts,
    geometry_wkb,
    parse_contacts,
    split_project_code,
)

TYPE_TOKENS: dict[str, str] = {"t": "matched", "q": "qualified", "u": "unqualified", "s": "sentinel_tag"}
FORMATS: tuple[str, ...] = ("2025", "legacy")

MATCHED_2025 = (
    "collectionCode, catalogNumber, organismID, scientificName, commonName, dateLastModified, detectedBy, "
    "station, receiver, bottomDepth, receiverDepth, tagName, codeSpace, sensorName, sensorRaw, sensorType, "
    "sensorValue, sensorUnit, dateCollectedUTC, uncorrectedDateCollectedUTC, decimalLongitude, "
    "decimalLatitude, geodeticDatum, geometry, localArea, citation, unqDetecID, contactPOC, contactPI"
).split(", ")
QUALIFIED_2025 = (
    "basisOfRecord, institutionCode, collectionCode, dateLastModified, dateCollectedUTC, "
    "uncorrectedDateCollectedUTC, trackerCode, tagName, catalogNumber, station, receiverSerial, "
    "decimalLongitude, decimalLatitude, geodeticDatum, rcvrCatNumber, sensorType, sensorName, sensorRaw, "
    "geometry, scientificName, contactPOC, contactPI"
).split(", ")
_NOT_IN_UNQUALIFIED_2025 = {"trackerCode", "scientificName", "contactPOC", "contactPI"}
UNQUALIFIED_2025 = [c for c in QUALIFIED_2025 if c not in _NOT_IN_UNQUALIFIED_2025]

MATCHED_LEGACY = (
    "collectioncode, catalognumber, scientificname, commonname, datelastmodified, detectedby, "
    "receiver_group, station, receiver, bottom_depth, receiver_depth, tagname, codespace, sensorname, "
    "sensorraw, sensortype, sensorvalue, sensorunit, datecollected, timezone, longitude, latitude, "
    "the_geom, yearcollected, monthcollected, daycollected, julianday, timeofday, local_area, notes, "
    "citation, unqdetecid, contact_poc, contact_pi"
).split(", ")
QUALIFIED_LEGACY = (
    "basisofrecord, institutioncode, collectioncode, datelastmodified, datecollected, timezone, trackercode, "
    "fieldnumber, catalognumber, yearcollected, monthcollected, daycollected, julianday, timeofday, station, "
    "collectornumber, latitude, longitude, rcvrcatnumber, sensorname, sensorraw, the_geom, notes, "
    "tag_contact_pi, tag_contact_poc, scientificname"
).split(", ")
_NOT_IN_UNQUALIFIED_LEGACY = {"trackercode", "scientificname", "tag_contact_pi", "tag_contact_poc"}
UNQUALIFIED_LEGACY = [c for c in QUALIFIED_LEGACY if c not in _NOT_IN_UNQUALIFIED_LEGACY]

TIMESTAMP_COLUMNS = frozenset(
    {
        "dateLastModified",
        "dateCollectedUTC",
        "uncorrectedDateCollectedUTC",
        "datelastmodified",
        "datecollected",
    }
)
DOUBLE_COLUMNS = frozenset(
    {
        "bottomDepth", "receiverDepth", "sensorRaw", "sensorValue", "decimalLongitude", "decimalLatitude",
        "bottom_depth", "receiver_depth", "sensorraw", "sensorvalue", "longitude", "latitude", "timeofday",
    }
)  # fmt: skip
INT_COLUMNS = frozenset({"yearcollected", "monthcollected", "daycollected", "julianday"})
GEOMETRY_COLUMNS = frozenset({"geometry", "the_geom"})


class FormatError(ValueError):
    """An unknown type code or format; the message names it."""


@dataclass(frozen=True)
class Layout:
    """The columns of one extract kind in one format, in file order."""

    type_code: str
    fmt: str
    columns: tuple[str, ...]

    @property
    def bom(self) -> bool:
        return self.fmt == "legacy"

    @property
    def token(self) -> str:
        return TYPE_TOKENS[self.type_code]

    def header(self) -> bytes:
        return (("\ufeff" if self.bom else "") + ",".join(self.columns) + "\r\n").encode("utf-8")

    def arrow_kind(self, column: str) -> str:
        """`timestamp` | `double` | `int` | `binary` | `string` (Parquet types, extract-formats.md §6)."""
        if column in TIMESTAMP_COLUMNS:
            return "timestamp"
        if column in DOUBLE_COLUMNS:
            return "double"
        if column in INT_COLUMNS:
            return "int"
        if column in GEOMETRY_COLUMNS:
            return "binary"
        return "string"


_LAYOUTS = {
    ("t", "2025"): MATCHED_2025,
    ("q", "2025"): QUALIFIED_2025,
    ("u", "2025"): UNQUALIFIED_2025,
    ("s", "2025"): QUALIFIED_2025,
    ("t", "legacy"): MATCHED_LEGACY,
    ("q", "legacy"): QUALIFIED_LEGACY,
    ("u", "legacy"): UNQUALIFIED_LEGACY,
    ("s", "legacy"): QUALIFIED_LEGACY,
}


def check_type(type_code: str) -> str:
    code = type_code.strip().lower()
    if code not in TYPE_TOKENS:
        raise FormatError(f"extract type {type_code!r} is not one of {', '.join(TYPE_TOKENS)}")
    return code


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise FormatError(f"extract format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def layout(type_code: str, fmt: str = "2025") -> Layout:
    t, f = check_type(type_code), check_format(fmt)
    return Layout(t, f, tuple(_LAYOUTS[(t, f)]))


def extract_basename(code: str, type_code: str, year: int) -> str:
    """`nsbs_matched_detections_2022` for (`NSBS` or `OTN.NSBS`, `t`, 2022)."""
    bare = split_project_code(code)[1]
    return f"{bare.lower()}_{TYPE_TOKENS[check_type(type_code)]}_detections_{year:04d}"


__all__ = [
    "FORMATS",
    "MATCHED_2025",
    "MATCHED_LEGACY",
    "QUALIFIED_2025",
    "QUALIFIED_LEGACY",
    "TYPE_TOKENS",
    "UNQUALIFIED_2025",
    "UNQUALIFIED_LEGACY",
    "FormatError",
    "Layout",
    "check_format",
    "check_type",
    "extract_basename",
    "format_contacts",
    "geometry_wkb",
    "layout",
    "parse_contacts",
    "split_project_code",
]
