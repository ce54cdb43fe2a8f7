"""Reading the extract CSV while it is still being written, so that zip and Parquet keep pace with COPY.

PostgreSQL sends a big extract's rows for many seconds, during which the extractor mostly waits: the zip
and Parquet threads read the growing file behind the writer instead of starting once it is complete.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

POLL = 0.02  # seconds a reader waits at the current end of the file for more bytes


class WriterFailed(Exception):
    """The CSV writer gave up; readers of the growing file stop with this."""


class CsvProgress:
    """What the writer tells its readers: the file is complete, or writing failed."""

    def __init__(self) -> None:
        self._complete = threading.Event()
        self._failed = False

    def complete(self) -> None:
        """Every byte is written and flushed (the file is closed)."""
        self._complete.set()

    def fail(self) -> None:
        self._failed = True
        self._complete.set()

    def wait(self, timeout: float) -> tuple[bool, bool]:
        """(complete, failed) after waiting at most `timeout` for the end."""
        done = self._complete.wait(timeout)
        return done, self._failed


class GrowingFile(io.RawIOBase):
    """A read-only stream of `path` that, at its current end, waits for more until the writer is done."""

    def __init__(self, path: Path, progress: CsvProgress) -> None:
        super().__init__()
        self._file = Path(path).open("rb", buffering=0)
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` entirely unless the file ends first: readers then cut the same blocks as from
        the finished file (the Parquet's row groups, and so its bytes, do not depend on timing)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            n = self._file.readinto(view[filled:])
            if n:
                filled += n
                continue
            complete, failed = self._progress.wait(POLL)
            if failed:
                raise WriterFailed("the extract CSV was not completed")
            if complete:  # bytes written just before the end was announced, then the end
                while filled < len(view) and (n := self._file.readinto(view[filled:])):
                    filled += n
                break
        return filled

    def close(self) -> None:
        self._file.close()
        super().close()
