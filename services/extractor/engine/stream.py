"""Turning PostgreSQL COPY CSV output into extract CSV bytes, chunk by chunk, in flat memory.

COPY ends records with LF; the format wants CRLF, but an LF inside a quoted field must stay LF. Record
terminators are told apart by quote parity: a line whose quotes are unbalanced continues a quoted field.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

PROGRESS_EVERY = 50_000


class CrlfWriter:
    """Feed COPY CSV chunks; writes them with CRLF record terminators and counts records."""

    def __init__(self, out: BinaryIO, progress: Callable[[int], None] | None = None) -> None:
        self.out = out
        self.rows = 0
        self._carry = b""
        self._in_quote = False
        self._progress = progress
        self._next_report = PROGRESS_EVERY

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk if self._carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._carry = data
            return
        body, self._carry = data[: cut + 1], data[cut + 1 :]
        if not self._in_quote and b'"' not in body:
            self.rows += body.count(b"\n")
            self.out.write(body.replace(b"\n", b"\r\n"))
        else:
            pieces = body.split(b"\n")
            pieces.pop()
            out: list[bytes] = []
            in_quote = self._in_quote
            rows = 0
            for piece in pieces:
                if piece.count(b'"') & 1:
                    in_quote = not in_quote
                out.append(piece)
                if in_quote:
                    out.append(b"\n")
                else:
                    out.append(b"\r\n")
                    rows += 1
            self._in_quote = in_quote
            self.rows += rows
            self.out.write(b"".join(out))
        if self._progress is not None and self.rows >= self._next_report:
            self._next_report = self.rows + PROGRESS_EVERY
            self._progress(self.rows)

    def close(self) -> None:
        if self._carry or self._in_quote:
            raise ValueError("COPY output ended inside a record")


def keyed_records(f: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """Records of a COPY CSV spool whose first column is a hex sort key: (key, rest without LF)."""
    pending: list[bytes] = []
    in_quote = False
    for line in f:
        body = line[:-1] if line.endswith(b"\n") else line
        if body.count(b'"') & 1:
            in_quote = not in_quote
        pending.append(body)
        if in_quote:
            continue
        record = b"\n".join(pending) if len(pending) > 1 else pending[0]
        pending = []
        key, _, rest = record.partition(b",")
        yield key, rest
    if pending:
        raise ValueError("COPY output ended inside a record")


def merge_spools(
    spools: Sequence[BinaryIO], out: BinaryIO, progress: Callable[[int], None] | None = None
) -> int:
    """Merge per-node spools sorted by their key column into `out` (CRLF records); returns the row count."""
    rows = 0
    next_report = PROGRESS_EVERY
    for _key, rest in heapq.merge(*(keyed_records(s) for s in spools), key=lambda kr: kr[0]):
        out.write(rest)
        out.write(b"\r\n")
        rows += 1
        if progress is not None and rows >= next_report:
            next_report = rows + PROGRESS_EVERY
            progress(rows)
    return rows
