"""The notebook baseline: an extract made the way a node manager's Jupyter notebook makes it today.

The notebook reads the tables with `pandas.read_sql` (SQLAlchemy + psycopg2): the year's detections of the
project (`SELECT *` of `otn_detections_<year>` with a WHERE on project and match type) from the nodes that
hold them, then the projects, contacts and animals it needs; it shapes the extract in pandas (merges for
the lookups, formatted times, floats and geometry, per-detection ids, the node-prefixed codes, the sort),
writes it with `DataFrame.to_csv` and zips it. Only the CSV-zip is made (the notebooks make no Parquet),
which favours the notebook. The whole result sits in memory, which is where notebooks run out of it.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from shared.formats import extract_basename, layout, split_project_code
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

RELATION = {"t": MATCH_ANIMAL, "q": MATCH_ANIMAL, "u": MATCH_UNQUALIFIED, "s": MATCH_SENTINEL}


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))


def _hex(value: Any, prefix: str) -> Any:
    if value is None:
        return None
    raw = bytes(value)
    if prefix:  # EWKB: the SRID flag and 4326 after the byte order and type
        return prefix + raw[5:].hex().upper()
    return raw.hex().upper()


def _floats(col: pd.Series) -> pd.Series:
    """What to_csv writes anyway for a float column (repr: `86.0`, `-63.4689`), blanks for NULL."""
    return col.astype("float64")


def _times(col: pd.Series) -> pd.Series:
    """`YYYY-MM-DD HH:MM:SS` plus the fraction where there is one, as the extract wants."""
    text = col.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text.str.rstrip("0").str.rstrip(".")


def _contacts(conns: dict[str, sa.Connection]) -> pd.DataFrame:
    """Per project code: its `Name (email), …` POC and PI strings, from every node."""
    frames = []
    for conn in conns.values():
        frames.append(
            pd.read_sql(
                sa.text(
                    f"SELECT cp.{CR.project} AS code, cp.{CR.role} AS role, cp.{CR.position} AS position, "
                    f"c.{C.name} AS name, c.{C.email} AS email FROM {CR.table} cp "
                    f"JOIN {C.table} c ON c.{C.id} = cp.{CR.contact}"
                ),
                conn,
            )
        )
    people = pd.concat(frames, ignore_index=True).sort_values(["code", "role", "position"])
    people["who"] = people["name"].where(
        people["email"].fillna("") == "", people["name"] + " (" + people["email"] + ")"
    )
    joined = people.groupby(["code", "role"])["who"].agg(", ".join).unstack("role")
    return pd.DataFrame(
        {"code": joined.index, "poc": joined.get(ROLE_POC).values, "pi": joined.get(ROLE_PI).values}
    )


def _projects(conns: dict[str, sa.Connection]) -> pd.DataFrame:
    frames = [pd.read_sql(sa.text(f"SELECT * FROM {P.table}"), conn) for conn in conns.values()]
    return pd.concat(frames, ignore_index=True)


def receiver_extract(
    conns: dict[str, sa.Connection], home: str, code: str, year: int, t: str
) -> pd.DataFrame:
    """A qualified, unqualified or sentinel extract: the project's own receivers, on its own node."""
    where = f"{D.project} = :code AND {D.relationship} = :rel"
    if t == "q":
        where += f" AND {D.tracker} IS DISTINCT FROM :code"
    det = pd.read_sql(
        sa.text(f"SELECT * FROM {D.table}_{year} WHERE {where}"),
        conns[home],
        params={"code": code, "rel": RELATION[t]},
    )
    projects = _projects(conns)
    me = projects[projects[P.code] == code].iloc[0]
    out = pd.DataFrame(index=det.index)
    out["basisOfRecord"] = "MachineObservation"
    out["institutionCode"] = me[P.institution] or None
    out["collectionCode"] = f"{me[P.node]}.{code}"
    out["dateLastModified"] = det[D.date_modified].astype(str)
    out["dateCollectedUTC"] = _times(det[D.datecollected])
    out["uncorrectedDateCollectedUTC"] = _times(det[D.datecollected_uncorrected])
    if t != "u":
        label = projects[P.node] + "." + projects[P.code]
        trackers = dict(zip(projects[P.code], label, strict=True))
        out["trackerCode"] = det[D.tracker].map(trackers).fillna(det[D.tracker])
    out["tagName"] = det[D.tagname]
    out["catalogNumber"] = det[D.tagname] + "-" + det[D.detection_id].astype(str)
    out["station"] = det[D.station].replace("", None)
    out["receiverSerial"] = det[D.receiver]
    out["decimalLongitude"] = _floats(det[D.longitude])
    out["decimalLatitude"] = _floats(det[D.latitude])
    out["geodeticDatum"] = "EPSG:4326"
    out["rcvrCatNumber"] = det[D.rcvrcatnumber].replace("", None)
    out["sensorType"] = det[D.sensortype].replace("", None)
    out["sensorName"] = det[D.sensorname].replace("", None)
    out["sensorRaw"] = _floats(det[D.sensorraw])
    out["geometry"] = det[D.geom].map(lambda g: _hex(g, ""))
    if t != "u":
        animals = pd.concat(
            [
                pd.read_sql(sa.text(f"SELECT {A.catalog}, {A.scientific_name} FROM {A.table}"), conn)
                for conn in conns.values()
            ],
            ignore_index=True,
        ).drop_duplicates(A.catalog)
        species = det[D.animal].map(dict(zip(animals[A.catalog], animals[A.scientific_name], strict=True)))
        shares = det[D.tracker].map(dict(zip(projects[P.code], projects[P.shares_species], strict=True)))
        out["scientificName"] = species.where(shares.fillna(False).astype(bool)).replace("", None)
        contacts = _contacts(conns).set_index("code")
        out["contactPOC"] = det[D.tracker].map(contacts["poc"])
        out["contactPI"] = det[D.tracker].map(contacts["pi"])
    # row order of the extract: tag, time, then detection number for ties
    keys = det[[D.tagname, D.datecollected, D.detection_id]]
    order = keys.sort_values([D.tagname, D.datecollected, D.detection_id], kind="stable").index
    return out.loc[order]


def matched_extract(conns: dict[str, sa.Connection], home: str, code: str, year: int) -> pd.DataFrame:
    """A matched extract: the project's animals on every node's receivers, plus its release rows."""
    frames = [
        pd.read_sql(
            sa.text(f"SELECT * FROM {D.table}_{year} WHERE {D.tracker} = :code AND {D.relationship} = :rel"),
            conn,
            params={"code": code, "rel": MATCH_ANIMAL},
        )
        for conn in conns.values()
    ]
    det = pd.concat(frames, ignore_index=True)
    del frames
    projects = _projects(conns).set_index(P.code)
    contacts = _contacts(conns).set_index("code")
    animals = pd.read_sql(
        sa.text(f"SELECT * FROM {A.table} WHERE {A.project} = :code"), conns[home], params={"code": code}
    ).set_index(A.catalog)
    label = f"{projects.loc[code, P.node]}.{code}"
    by = det[D.project]
    out = pd.DataFrame(index=det.index)
    out["collectionCode"] = label
    out["catalogNumber"] = det[D.animal]
    out["organismID"] = det[D.animal]
    out["scientificName"] = det[D.animal].map(animals[A.scientific_name]).replace("", None)
    out["commonName"] = det[D.animal].map(animals[A.common_name]).replace("", None)
    out["dateLastModified"] = det[D.date_modified].astype(str)
    out["detectedBy"] = by.map(projects[P.node]) + "." + by
    out["station"] = det[D.station].replace("", None)
    out["receiver"] = det[D.receiver]
    out["bottomDepth"] = _floats(det[D.bottom_depth])
    out["receiverDepth"] = _floats(det[D.receiver_depth])
    out["tagName"] = det[D.tagname]
    out["codeSpace"] = det[D.codespace].replace("", None)
    out["sensorName"] = det[D.sensorname].replace("", None)
    out["sensorRaw"] = _floats(det[D.sensorraw])
    out["sensorType"] = det[D.sensortype].replace("", None)
    out["sensorValue"] = _floats(det[D.sensorvalue])
    out["sensorUnit"] = det[D.sensorunit].replace("", None)
    out["dateCollectedUTC"] = _times(det[D.datecollected])
    out["uncorrectedDateCollectedUTC"] = _times(det[D.datecollected_uncorrected])
    out["decimalLongitude"] = _floats(det[D.longitude])
    out["decimalLatitude"] = _floats(det[D.latitude])
    out["geodeticDatum"] = "EPSG:4326"
    out["geometry"] = det[D.geom].map(lambda g: _hex(g, "0101000020E6100000"))
    out["localArea"] = by.map(projects[P.local_area]).replace("", None)
    out["citation"] = by.map(projects[P.citation]).replace("", None)
    out["unqDetecID"] = by + "-" + det[D.tagname] + "-" + det[D.detection_id].astype(str)
    out["contactPOC"] = by.map(contacts["poc"])
    out["contactPI"] = by.map(contacts["pi"])
    out["_t"] = det[D.datecollected]
    out["_r"] = 1
    rel = pd.read_sql(
        sa.text(f"SELECT * FROM {R.table} WHERE {R.project} = :code AND {R.tag_kind} = 'animal'"),
        conns[home],
        params={"code": code},
    )
    rows = pd.DataFrame(index=rel.index)
    rows["collectionCode"] = label
    rows["catalogNumber"] = rel[R.catalog]
    rows["organismID"] = rel[R.catalog]
    rows["scientificName"] = rel[R.catalog].map(animals[A.scientific_name])
    rows["commonName"] = rel[R.catalog].map(animals[A.common_name])
    rows["dateLastModified"] = rel[R.date_modified].astype(str)
    rows["detectedBy"] = label
    rows["station"] = rel[R.locality]
    rows["receiver"] = "release"
    rows["tagName"] = rel[R.tagname]
    rows["dateCollectedUTC"] = _times(rel[R.release_time])
    rows["uncorrectedDateCollectedUTC"] = rows["dateCollectedUTC"]
    rows["decimalLongitude"] = _floats(rel[R.longitude])
    rows["decimalLatitude"] = _floats(rel[R.latitude])
    rows["geodeticDatum"] = "EPSG:4326"
    rows["geometry"] = rel[R.geom].map(lambda g: _hex(g, "0101000020E6100000"))
    rows["localArea"] = rel[R.locality]
    rows["citation"] = projects.loc[code, P.citation]
    rows["unqDetecID"] = rel[R.catalog] + "-release-" + rel[R.tagname]
    rows["contactPOC"] = contacts["poc"].get(code)
    rows["contactPI"] = contacts["pi"].get(code)
    rows["notes"] = rel[R.notes].replace("", None)
    rows["_t"] = rel[R.release_time]
    rows["_r"] = 0
    both = pd.concat([rows, out], ignore_index=True)
    del out, det
    # releases first per animal, then detections by time
    both = both.sort_values(["catalogNumber", "_t", "_r"], kind="stable")
    return both.drop(columns=["_t", "_r"])


def make_extract(
    nodes: dict[str, str], code: str, year: int, type_code: str, out_dir: Path
) -> dict[str, Any]:
    """Build the extract's CSV and zip as the notebook does; returns timings, rows and file sizes."""
    node, bare = split_project_code(code)
    lay = layout(type_code, "2025")
    basename = extract_basename(bare, type_code, year)
    csv_path, zip_path = out_dir / f"{basename}.csv", out_dir / f"{basename}.zip"
    started = time.perf_counter()
    engines = {name: _engine(url) for name, url in nodes.items()}
    conns = {name: engine.connect() for name, engine in engines.items()}
    try:
        home = node or _home(conns, bare)
        if type_code == "t":
            df = matched_extract(conns, home, bare, year)
        else:
            df = receiver_extract(conns, home, bare, year, type_code)
    finally:
        for conn in conns.values():
            conn.close()
    shaped = time.perf_counter() - started
    df = df.reindex(columns=list(lay.columns))
    df.to_csv(csv_path, index=False, lineterminator="\r\n")
    rows = len(df)
    del df
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, csv_path.name)
    return {
        "seconds": time.perf_counter() - started,
        "read_seconds": shaped,
        "rows": rows,
        "csv_bytes": csv_path.stat().st_size,
        "zip_bytes": zip_path.stat().st_size,
    }


def _home(conns: dict[str, sa.Connection], code: str) -> str:
    for name, conn in conns.items():
        found = conn.execute(sa.text(f"SELECT 1 FROM {P.table} WHERE {P.code} = :c"), {"c": code}).first()
        if found:
            return name
    raise ValueError(f"project {code} is on none of the nodes")
