"""Comparing rebuilt extracts with the real OTN samples (used by the integration and e2e tests)."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import math
import zipfile
from pathlib import Path

from services.extractor.engine import ExtractResult
from shared.formats import layout


def zipped_csv(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [name], f"{path.name} must hold exactly {name}"
        return zf.read(name)


def built_zip(result: ExtractResult) -> Path:
    return next(f.path for f in result.files if f.kind == "zip")


def built_parquet(result: ExtractResult) -> Path:
    return next(f.path for f in result.files if f.kind == "parquet")


def assert_same_lines(original: bytes, built: bytes) -> None:
    assert built.endswith(b"\r\n")
    o_lines, b_lines = original.split(b"\r\n"), built.split(b"\r\n")
    assert b_lines[0] == o_lines[0], "header differs"
    o_count, b_count = collections.Counter(o_lines[1:]), collections.Counter(b_lines[1:])
    missing, extra = o_count - b_count, b_count - o_count
    assert not missing and not extra, (
        f"{sum(missing.values())} original lines missing, {sum(extra.values())} extra; "
        f"first missing: {next(iter(missing), b'')[:300]!r}; first extra: {next(iter(extra), b'')[:300]!r}"
    )


def _legacy_rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return rows[0], rows[1:]


def _value(text: str, column: str, minutes_only: bool) -> object:
    text = text.strip()
    if text in ("", "NA"):
        return ""
    if column in ("datecollected", "datelastmodified"):
        t = dt.datetime.fromisoformat(text)
        if t.tzinfo is not None:
            t = t.astimezone(dt.UTC).replace(tzinfo=None)
        return t.replace(second=0, microsecond=0) if minutes_only and column == "datecollected" else t
    try:
        return float(text)
    except ValueError:
        return text


def assert_legacy_equal(
    original: bytes, built: bytes, key: str, skip: set[str], minutes_only: bool = False
) -> list[str]:
    """Compare every column of the legacy layout that the original has, row by row (matched by `key`)."""
    assert built.startswith("\ufeff".encode()) and built.endswith(b"\r\n")
    o_head, o_rows = _legacy_rows(original)
    b_head, b_rows = _legacy_rows(built)
    assert b_head == list(layout("t" if "detectedby" in b_head else "q", "legacy").columns)
    columns = [c for c in b_head if c in o_head and c not in skip]
    assert len(o_rows) == len(b_rows)
    o_by_key = {r[o_head.index(key)]: r for r in o_rows}
    b_by_key = {r[b_head.index(key)]: r for r in b_rows}
    assert len(o_by_key) == len(o_rows) and o_by_key.keys() == b_by_key.keys()
    for k, o_row in o_by_key.items():
        b_row = b_by_key[k]
        for c in columns:
            ov = _value(o_row[o_head.index(c)], c, minutes_only)
            bv = _value(b_row[b_head.index(c)], c, minutes_only)
            if isinstance(ov, float) and isinstance(bv, float):
                # old float output keeps 15 significant digits; the last one depends on the arithmetic
                assert math.isclose(ov, bv, rel_tol=1e-13), (k, c, ov, bv)
            else:
                assert ov == bv, (k, c, ov, bv)
    return columns


async def load_samples(nodes: dict[str, str], samples_dir: Path) -> None:
    """The four zip samples into nodes OTN, ACT, FACT: 2025 files as they are, legacy ones into ACT."""
    from otn_push.load import load_files

    await load_files(
        nodes,
        [
            samples_dir / "nsbs_matched_detections_2022.zip",
            samples_dir / "serc1_qualified_detections_2017.zip",
        ],
    )
    await load_files(
        nodes,
        [
            samples_dir / "proj67_matched_detections_2017.zip",
            samples_dir / "proj61_qualified_detections_2017_fixed.zip",
        ],
        default_node="ACT",
    )
