"""The SQL of an extract: one query per node whose `COPY … TO STDOUT (FORMAT csv)` output is the file body.

Every value is formatted in SQL (extract-formats.md §2), so the COPY output only needs its record
terminators turned into CRLF. The session must run with `DateStyle ISO` and `extra_float_digits` 1 (2025:
shortest round-trip floats) or 0 (legacy: 15 significant digits, e.g. `timeofday` 19.4166666666667).

Lookups owned by other nodes are loaded into per-connection temp tables first (`pg_temp.x_animals`,
`pg_temp.x_trackers`), so no query needs a cross-database link.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.formats import Layout
from shared.nodeschema import (
    CR,
    MATCH_ANIMAL,
    MATCH_SENTINEL,
    MATCH_UNQUALIFIED,
    ROLE_PI,
    ROLE_POC,
    A,
    C,
    D,
    P,
    R,
)

# jit off: the unplaced-deployment subplans make every query look costly, so PostgreSQL spent ~250 ms
# compiling each one (more than the whole count query takes); work_mem: the extract's ORDER BY sorts in
# memory instead of spilling to disk for extracts up to a few hundred thousand rows
_PERFORMANCE = "SET jit = off; SET work_mem = '64MB'"
SESSION_SETUP = {
    "2025": f"SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 1; {_PERFORMANCE}",
    "legacy": f"SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 0; {_PERFORMANCE}",
}

TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS x_animals (catalog text PRIMARY KEY, sci text, common text);
CREATE TEMP TABLE IF NOT EXISTS x_trackers (code text PRIMARY KEY, label text, shares boolean,
                                            poc text, pi text);
TRUNCATE x_animals, x_trackers;
"""

EWKB_PREFIX = "0101000020E6100000"


def lit(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on in every supported PostgreSQL)."""
    return "'" + value.replace("'", "''") + "'"


def f_float(x: str) -> str:
    """Shortest round-trip text that always shows a decimal point (`86.0`, `-63.4689`)."""
    return f"CASE WHEN {x} = trunc({x}) AND abs({x}) < 1e15 THEN {x}::text || '.0' ELSE {x}::text END"


def f_text(x: str) -> str:
    return f"NULLIF({x}, '')"


def f_geom(x: str, ewkb: bool) -> str:
    if ewkb:
        return f"'{EWKB_PREFIX}' || upper(encode(substring({x} FROM 6), 'hex'))"
    return f"upper(encode({x}, 'hex'))"


def f_label(node: str, code: str, fmt: str) -> str:
    return f"{node} || '.' || {code}" if fmt == "2025" else code


def _legacy_time_parts(ts: str) -> dict[str, str]:
    return {
        "timezone": "'UTC'",
        "yearcollected": f"extract(year FROM {ts})::int::text",
        "monthcollected": f"extract(month FROM {ts})::int::text",
        "daycollected": f"extract(day FROM {ts})::int::text",
        "julianday": f"extract(doy FROM {ts})::int::text",
        # hour + minute/60 + second/3600 in float8 reproduces the legacy files but for the 15th digit
        "timeofday": f_float(
            f"(extract(hour FROM {ts})::float8 + extract(minute FROM {ts})::float8 / 60 "
            f"+ extract(second FROM {ts})::float8 / 3600)"
        ),
    }


CONTACTS_CTE = f"""pc AS (
    SELECT cp.{CR.project} AS code,
        string_agg(CASE WHEN c.{C.email} <> '' THEN c.{C.name} || ' (' || c.{C.email} || ')'
                        ELSE c.{C.name} END, ', ' ORDER BY cp.{CR.position})
            FILTER (WHERE cp.{CR.role} = '{ROLE_POC}') AS poc,
        string_agg(CASE WHEN c.{C.email} <> '' THEN c.{C.name} || ' (' || c.{C.email} || ')'
                        ELSE c.{C.name} END, ', ' ORDER BY cp.{CR.position})
            FILTER (WHERE cp.{CR.role} = '{ROLE_PI}') AS pi
    FROM {CR.table} cp JOIN {C.table} c ON c.{C.id} = cp.{CR.contact}
    GROUP BY cp.{CR.project})"""


@dataclass(frozen=True)
class ExtractSpec:
    """One extract: bare upper-case project code, its node, year, type code and format."""

    code: str
    node: str
    year: int
    type_code: str
    fmt: str

    @property
    def label(self) -> str:
        return f"{self.node}.{self.code}" if self.fmt == "2025" else self.code

    def year_range(self, col: str) -> str:
        return (
            f"{col} >= '{self.year:04d}-01-01'::timestamp AND {col} < '{self.year + 1:04d}-01-01'::timestamp"
        )


def unplaced(d: str = "d") -> str:
    """True for a detection that no receiver deployment of its node places (never dropped, reported)."""
    return f"""CASE WHEN {d}.{D.rcvrcatnumber} IS NOT NULL
        THEN NOT EXISTS (SELECT 1 FROM obis.moorings m WHERE m.catalognumber = {d}.{D.rcvrcatnumber})
        ELSE NOT EXISTS (SELECT 1 FROM obis.moorings m WHERE m.rcvrserial = {d}.{D.receiver}
            AND m.deploy_date <= {d}.{D.datecollected}
            AND (m.recovery_date IS NULL OR m.recovery_date >= {d}.{D.datecollected})) END"""


# ---------------------------------------------------------------- matched (t)


def _matched_where(spec: ExtractSpec) -> str:
    return (
        f"d.{D.tracker} = {lit(spec.code)} AND d.{D.relationship} = '{MATCH_ANIMAL}' "
        f"AND {spec.year_range('d.' + D.datecollected)}"
    )


def matched_detection_columns(spec: ExtractSpec) -> dict[str, str]:
    fmt = spec.fmt
    detected_by = f_label(f"p.{P.node}", f"d.{D.project}", fmt)
    cols = {
        "collectionCode": lit(spec.label),
        "catalogNumber": f"d.{D.animal}",
        "organismID": f"d.{D.animal}",
        "scientificName": f_text("xa.sci"),
        "commonName": f_text("xa.common"),
        "dateLastModified": f"d.{D.date_modified}::text",
        "detectedBy": detected_by,
        "station": f_text(f"d.{D.station}"),
        "receiver": f"d.{D.receiver}",
        "bottomDepth": f_float(f"d.{D.bottom_depth}"),
        "receiverDepth": f_float(f"d.{D.receiver_depth}"),
        "tagName": f"d.{D.tagname}",
        "codeSpace": f_text(f"d.{D.codespace}"),
        "sensorName": f_text(f"d.{D.sensorname}"),
        "sensorRaw": f_float(f"d.{D.sensorraw}"),
        "sensorType": f_text(f"d.{D.sensortype}"),
        "sensorValue": f_float(f"d.{D.sensorvalue}"),
        "sensorUnit": f_text(f"d.{D.sensorunit}"),
        "dateCollectedUTC": f"d.{D.datecollected}::text",
        "uncorrectedDateCollectedUTC": f"d.{D.datecollected_uncorrected}::text",
        "decimalLongitude": f_float(f"d.{D.longitude}"),
        "decimalLatitude": f_float(f"d.{D.latitude}"),
        "geodeticDatum": "'EPSG:4326'",
        "geometry": f_geom(f"d.{D.geom}", ewkb=True),
        "localArea": f_text(f"p.{P.local_area}"),
        "citation": f_text(f"p.{P.citation}"),
        "unqDetecID": f"d.{D.project} || '-' || d.{D.tagname} || '-' || d.{D.detection_id}",
        "contactPOC": "pc.poc",
        "contactPI": "pc.pi",
        "notes": "NULL::text",
    }
    cols.update(_legacy_time_parts(f"d.{D.datecollected}"))
    cols["_key"] = (
        f"encode(convert_to(d.{D.animal} || chr(1) || to_char(d.{D.datecollected}, 'YYYYMMDDHH24MISSUS') "
        f"|| '1' || d.{D.project} || chr(1) || lpad(d.{D.detection_id}::text, 20, '0'), 'UTF8'), 'hex')"
    )
    return cols


def matched_release_columns(spec: ExtractSpec) -> dict[str, str]:
    t = f"r.{R.release_time}"
    cols = {
        "collectionCode": lit(spec.label),
        "catalogNumber": f"r.{R.catalog}",
        "organismID": f"r.{R.catalog}",
        "scientificName": f_text(f"an.{A.scientific_name}"),
        "commonName": f_text(f"an.{A.common_name}"),
        "dateLastModified": f"r.{R.date_modified}::text",
        "detectedBy": lit(spec.label),
        "station": f_text(f"r.{R.locality}"),
        "receiver": "'release'",
        "bottomDepth": "NULL::text",
        "receiverDepth": "NULL::text",
        "tagName": f"r.{R.tagname}",
        "codeSpace": "NULL::text",
        "sensorName": "NULL::text",
        "sensorRaw": "NULL::text",
        "sensorType": "NULL::text",
        "sensorValue": "NULL::text",
        "sensorUnit": "NULL::text",
        "dateCollectedUTC": f"{t}::text",
        "uncorrectedDateCollectedUTC": f"{t}::text",
        "decimalLongitude": f_float(f"r.{R.longitude}"),
        "decimalLatitude": f_float(f"r.{R.latitude}"),
        "geodeticDatum": "'EPSG:4326'",
        "geometry": f_geom(f"r.{R.geom}", ewkb=True),
        "localArea": f_text(f"r.{R.locality}"),
        "citation": f_text(f"p.{P.citation}"),
        "unqDetecID": f"r.{R.catalog} || '-release-' || r.{R.tagname}",
        "contactPOC": "pc.poc",
        "contactPI": "pc.pi",
        "notes": f_text(f"r.{R.notes}"),
    }
    cols.update(_legacy_time_parts(t))
    cols["_key"] = (
        f"encode(convert_to(r.{R.catalog} || chr(1) || to_char({t}, 'YYYYMMDDHH24MISSUS') "
        f"|| '0' || r.{R.tagname}, 'UTF8'), 'hex')"
    )
    return cols


LEGACY_MATCHED_SOURCES = {
    "collectioncode": "collectionCode",
    "catalognumber": "catalogNumber",
    "scientificname": "scientificName",
    "commonname": "commonName",
    "datelastmodified": "dateLastModified",
    "detectedby": "detectedBy",
    "receiver_group": "detectedBy",
    "station": "station",
    "receiver": "receiver",
    "bottom_depth": "bottomDepth",
    "receiver_depth": "receiverDepth",
    "tagname": "tagName",
    "codespace": "codeSpace",
    "sensorname": "sensorName",
    "sensorraw": "sensorRaw",
    "sensortype": "sensorType",
    "sensorvalue": "sensorValue",
    "sensorunit": "sensorUnit",
    "datecollected": "dateCollectedUTC",
    "longitude": "decimalLongitude",
    "latitude": "decimalLatitude",
    "the_geom": "geometry",
    "local_area": "localArea",
    "citation": "citation",
    "unqdetecid": "unqDetecID",
    "contact_poc": "contactPOC",
    "contact_pi": "contactPI",
}


def _select(cols: dict[str, str], layout: Layout, sources: dict[str, str], with_key: bool) -> str:
    exprs = [f"{cols['_key']} AS _k"] if with_key else []
    for name in layout.columns:
        exprs.append(f'{cols[sources.get(name, name)]} AS "{name}"')
    return ",\n       ".join(exprs)


def matched_query(spec: ExtractSpec, layout: Layout, with_releases: bool, with_key: bool) -> str:
    """Detections of the tag project's animals on this node's receivers (+ its releases on its own node)."""
    sources = LEGACY_MATCHED_SOURCES if spec.fmt == "legacy" else {}
    det = f"""SELECT {_select(matched_detection_columns(spec), layout, sources, True)}
FROM {D.table} d
JOIN {P.table} p ON p.{P.code} = d.{D.project}
LEFT JOIN x_animals xa ON xa.catalog = d.{D.animal}
LEFT JOIN pc ON pc.code = d.{D.project}
WHERE {_matched_where(spec)}"""
    parts = [det]
    if with_releases:
        parts.append(f"""SELECT {_select(matched_release_columns(spec), layout, sources, True)}
FROM {R.table} r
JOIN {P.table} p ON p.{P.code} = r.{R.project}
LEFT JOIN {A.table} an ON an.{A.catalog} = r.{R.catalog}
LEFT JOIN pc ON pc.code = r.{R.project}
WHERE r.{R.project} = {lit(spec.code)} AND r.{R.tag_kind} = 'animal'""")
    body = "\nUNION ALL\n".join(parts)
    outer = "*" if with_key else ", ".join(f'"{c}"' for c in layout.columns)
    return f'WITH {CONTACTS_CTE}\nSELECT {outer} FROM (\n{body}\n) x ORDER BY _k COLLATE "C"'


def matched_stats_query(spec: ExtractSpec) -> str:
    return f"""SELECT {f_label(f"p.{P.node}", f"d.{D.project}", "2025")} AS label, count(*) AS n,
       count(*) FILTER (WHERE {unplaced()}) AS unplaced
FROM {D.table} d JOIN {P.table} p ON p.{P.code} = d.{D.project}
WHERE {_matched_where(spec)} GROUP BY 1 ORDER BY 1"""


def release_count_query(spec: ExtractSpec) -> str:
    return (
        f"SELECT count(*) FROM {R.table} r WHERE r.{R.project} = {lit(spec.code)} "
        f"AND r.{R.tag_kind} = 'animal'"
    )


def matched_unplaced_query(spec: ExtractSpec) -> str:
    return f"""SELECT d.{D.receiver} AS receiver, count(*) AS n FROM {D.table} d
WHERE {_matched_where(spec)} AND {unplaced()} GROUP BY 1 ORDER BY 1"""


# ---------------------------------------------------- receiver side (q, u, s)

_RELATION = {"q": MATCH_ANIMAL, "u": MATCH_UNQUALIFIED, "s": MATCH_SENTINEL}


def receiver_where(spec: ExtractSpec) -> str:
    where = (
        f"d.{D.project} = {lit(spec.code)} AND d.{D.relationship} = '{_RELATION[spec.type_code]}' "
        f"AND {spec.year_range('d.' + D.datecollected)}"
    )
    if spec.type_code == "q":
        where += f" AND d.{D.tracker} IS DISTINCT FROM {lit(spec.code)}"
    return where


def receiver_columns(spec: ExtractSpec) -> dict[str, str]:
    fmt = spec.fmt
    tracker = "xt.label" if fmt == "2025" else f"d.{D.tracker}"
    cols = {
        "basisOfRecord": "'MachineObservation'",
        "institutionCode": f_text(f"p.{P.institution}"),
        "collectionCode": lit(spec.label),
        "dateLastModified": f"d.{D.date_modified}::text",
        "dateCollectedUTC": f"d.{D.datecollected}::text",
        "uncorrectedDateCollectedUTC": f"d.{D.datecollected_uncorrected}::text",
        "trackerCode": f"COALESCE({tracker}, d.{D.tracker})",
        "tagName": f"d.{D.tagname}",
        "catalogNumber": f"d.{D.tagname} || '-' || d.{D.detection_id}",
        "station": f_text(f"d.{D.station}"),
        "receiverSerial": f"d.{D.receiver}",
        "decimalLongitude": f_float(f"d.{D.longitude}"),
        "decimalLatitude": f_float(f"d.{D.latitude}"),
        "geodeticDatum": "'EPSG:4326'",
        "rcvrCatNumber": f_text(f"d.{D.rcvrcatnumber}"),
        "sensorType": f_text(f"d.{D.sensortype}"),
        "sensorName": f_text(f"d.{D.sensorname}"),
        "sensorRaw": f_float(f"d.{D.sensorraw}"),
        "geometry": f_geom(f"d.{D.geom}", ewkb=False),
        "scientificName": f"CASE WHEN xt.shares THEN {f_text('xa.sci')} END",
        "contactPOC": "xt.poc",
        "contactPI": "xt.pi",
        "notes": "NULL::text",
    }
    cols.update(_legacy_time_parts(f"d.{D.datecollected}"))
    return cols


LEGACY_RECEIVER_SOURCES = {
    "basisofrecord": "basisOfRecord",
    "institutioncode": "institutionCode",
    "collectioncode": "collectionCode",
    "datelastmodified": "dateLastModified",
    "datecollected": "dateCollectedUTC",
    "trackercode": "trackerCode",
    "fieldnumber": "tagName",
    "catalognumber": "catalogNumber",
    "station": "station",
    "collectornumber": "receiverSerial",
    "latitude": "decimalLatitude",
    "longitude": "decimalLongitude",
    "rcvrcatnumber": "rcvrCatNumber",
    "sensorname": "sensorName",
    "sensorraw": "sensorRaw",
    "the_geom": "geometry",
    "tag_contact_pi": "contactPI",
    "tag_contact_poc": "contactPOC",
    "scientificname": "scientificName",
}


def receiver_query(spec: ExtractSpec, layout: Layout) -> str:
    sources = LEGACY_RECEIVER_SOURCES if spec.fmt == "legacy" else {}
    cols = receiver_columns(spec)
    exprs = ",\n       ".join(f'{cols[sources.get(n, n)]} AS "{n}"' for n in layout.columns)
    return f"""SELECT {exprs}
FROM {D.table} d
JOIN {P.table} p ON p.{P.code} = d.{D.project}
LEFT JOIN x_trackers xt ON xt.code = d.{D.tracker}
LEFT JOIN x_animals xa ON xa.catalog = d.{D.animal}
WHERE {receiver_where(spec)}
ORDER BY d.{D.tagname} COLLATE "C", d.{D.datecollected}, d.{D.detection_id}"""


def receiver_stats_query(spec: ExtractSpec) -> str:
    return f"""SELECT d.{D.tracker} AS tracker, count(*) AS n,
       count(*) FILTER (WHERE {unplaced()}) AS unplaced
FROM {D.table} d WHERE {receiver_where(spec)} GROUP BY 1 ORDER BY 1"""


def receiver_unplaced_query(spec: ExtractSpec) -> str:
    return f"""SELECT d.{D.receiver} AS receiver, count(*) AS n FROM {D.table} d
WHERE {receiver_where(spec)} AND {unplaced()} GROUP BY 1 ORDER BY 1"""


# ---------------------------------------------------------------- lookups

PROJECT_NODE_QUERY = f"SELECT {P.node} FROM {P.table} WHERE {P.code} = $1"
ANIMALS_OF_PROJECTS_QUERY = (
    f"SELECT {A.catalog}, {A.scientific_name}, {A.common_name} FROM {A.table} WHERE {A.project} = ANY($1)"
)
TRACKERS_QUERY = f"""WITH {CONTACTS_CTE}
SELECT p.{P.code} AS code, p.{P.node} AS node, p.{P.shares_species} AS shares, pc.poc, pc.pi
FROM {P.table} p LEFT JOIN pc ON pc.code = p.{P.code} WHERE p.{P.code} = ANY($1)"""
