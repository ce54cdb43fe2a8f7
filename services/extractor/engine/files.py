"""The published files made from a finished extract CSV: deterministic zip and typed Parquet.

Both run in worker threads (blocking, CPU-bound) and stream: the zip copies the CSV in blocks, the Parquet
is converted batch by batch with explicit column types (extract-formats.md §6), so memory stays flat.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.formats import Layout

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
BLOCK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_zip(csv_path: Path, arcname: str, zip_path: Path) -> None:
    """A zip holding exactly the CSV at its root, deflated, with a fixed timestamp (same bytes every time)."""
    with csv_path.open("rb") as src:
        write_zip_from(src, arcname, zip_path, csv_path.stat().st_size)


def needs_zip64(size: int) -> bool:
    """What zipfile decides from a member's size known in advance (a ZIP64 header when it may be large)."""
    return size * 1.05 > zipfile.ZIP64_LIMIT


def write_zip_from(src: BinaryIO | io.RawIOBase, arcname: str, zip_path: Path, size: int = 0) -> None:
    """`write_zip` from a stream whose `size` may not be known yet (0): without ZIP64 headers, which a
    CSV for which `needs_zip64` holds must have: such a zip is made again with `write_zip`."""
    info = zipfile.ZipInfo(arcname, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    info.file_size = size
    with zipfile.ZipFile(zip_path, "w") as zf, zf.open(info, "w", force_zip64=False) as dst:
        shutil.copyfileobj(src, dst, BLOCK)


def arrow_schema(layout: Layout) -> pa.Schema:
    types = {
        "timestamp": pa.timestamp("ms"),
        "double": pa.float64(),
        "int": pa.int32(),
        "binary": pa.binary(),
        "string": pa.string(),
    }
    return pa.schema([pa.field(c, types[layout.arrow_kind(c)]) for c in layout.columns])


def _read_types(layout: Layout) -> dict[str, pa.DataType]:
    """How the CSV is parsed: times at ns (fractions like .3783 then truncate to ms), geometry as hex text."""
    read = {
        "timestamp": pa.timestamp("ns"),
        "double": pa.float64(),
        "int": pa.int32(),
        "binary": pa.string(),
        "string": pa.string(),
    }
    return {c: read[layout.arrow_kind(c)] for c in layout.columns}


_HEX = np.zeros(256, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _hex_to_binary(column: pa.Array) -> pa.Array:
    """Hex text -> bytes; vectorised when every value has the same length (WKB points always do)."""
    n = len(column)
    if n and column.null_count == 0:
        lengths = pc.min_max(pc.binary_length(column)).as_py()
        width = lengths["min"]
        if width == lengths["max"] and width % 2 == 0:
            offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
                column.offset : column.offset + n + 1
            ]
            data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + n * width]
            chars = data.reshape(n, width)
            raw = (_HEX[chars[:, 0::2]] << 4) | _HEX[chars[:, 1::2]]
            fixed = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width // 2), n, [None, pa.py_buffer(raw.tobytes())]
            )
            return fixed.cast(pa.binary())
    return pa.array([bytes.fromhex(v) if v else None for v in column.to_pylist()], type=pa.binary())


def write_parquet(csv_path: Path | BinaryIO | io.RawIOBase, layout: Layout, parquet_path: Path) -> int:
    """Convert the extract CSV (a path or a stream) to Parquet with the specified Arrow types; returns the
    row count."""
    schema = arrow_schema(layout)
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=1 << 20),  # larger blocks raise peak memory
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=_read_types(layout), strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    rows = 0
    with pq.ParquetWriter(parquet_path, schema, compression="zstd") as writer:
        for batch in reader:
            arrays = []
            for field in schema:
                col = batch.column(field.name)
                kind = layout.arrow_kind(field.name)
                if kind == "timestamp":
                    col = pc.cast(col, field.type, safe=False)
                elif kind == "binary":
                    col = _hex_to_binary(col)
                arrays.append(col)
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += batch.num_rows
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows
