"""Reading the extract CSV while it is written: the same bytes and blocks as the finished file."""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import pytest

from services.extractor.engine.files import write_zip, write_zip_from
from services.extractor.engine.growing import CsvProgress, GrowingFile, WriterFailed


def _write_slowly(path: Path, parts: list[bytes], progress: CsvProgress, fail: bool = False) -> None:
    with path.open("ab") as out:
        for part in parts:
            out.write(part)
            out.flush()
            time.sleep(0.005)
    if fail:
        progress.fail()
    else:
        progress.complete()


def test_a_reader_gets_every_byte_in_full_blocks_while_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"")
    parts = [bytes([65 + i % 26]) * (1000 + i * 37) for i in range(60)]
    progress = CsvProgress()
    writer = threading.Thread(target=_write_slowly, args=(path, parts, progress))
    writer.start()
    blocks = []
    with GrowingFile(path, progress) as src:
        while block := src.read(4096):
            blocks.append(block)
    writer.join()
    data = b"".join(parts)
    assert b"".join(blocks) == data
    assert [len(b) for b in blocks[:-1]] == [4096] * (len(blocks) - 1)  # never a short block mid-file


def test_a_reader_stops_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"")
    progress = CsvProgress()
    writer = threading.Thread(target=_write_slowly, args=(path, [b"a,b\r\n"] * 3, progress, True))
    writer.start()
    with GrowingFile(path, progress) as src, pytest.raises(WriterFailed):
        while src.read(1 << 20):
            pass
    writer.join()


def test_a_zip_made_from_the_growing_file_is_the_same_as_from_the_finished_one(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"")
    parts = [f"row {i},{i * 3.5},text\r\n".encode() * 50 for i in range(100)]
    progress = CsvProgress()
    writer = threading.Thread(target=_write_slowly, args=(path, parts, progress))
    writer.start()
    with GrowingFile(path, progress) as src:
        write_zip_from(src, "x.csv", tmp_path / "streamed.zip")
    writer.join()
    write_zip(path, "x.csv", tmp_path / "finished.zip")
    assert (tmp_path / "streamed.zip").read_bytes() == (tmp_path / "finished.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "streamed.zip") as zf:
        assert zf.read("x.csv") == b"".join(parts)
