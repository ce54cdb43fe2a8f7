"""FolderStore: Plone layout, atomic replace, hash verification, traversal refused, no partial files."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from services.uploader import store as store_module
from services.uploader.store import FolderStore, SourceError, StoreUnavailable, UnsafeName


def staged(tmp_path: Path, name: str, content: bytes) -> tuple[Path, str]:
    path = tmp_path / "staging" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_put_uses_plone_layout_and_returns_location_and_url(tmp_path: Path) -> None:
    root = tmp_path / "store"
    local, digest = staged(tmp_path, "nsbs_matched_detections_2022.zip", b"zip bytes")
    stored = await FolderStore(root).put(
        local, node="OTN", code="NSBS", name="nsbs_matched_detections_2022.zip", sha256=digest
    )
    assert stored.location == "data/repository/nsbs/detection-extracts/nsbs_matched_detections_2022.zip"
    target = root / stored.location
    assert target.read_bytes() == b"zip bytes"
    assert stored.url == target.resolve().as_uri()
    assert stored.copied
    assert store_files(root) == [stored.location]


async def test_base_url_makes_links(tmp_path: Path) -> None:
    local, digest = staged(tmp_path, "a.zip", b"x")
    stored = await FolderStore(tmp_path / "s", base_url="https://members.oceantrack.org/").put(
        local, node="OTN", code="HFX", name="a.zip", sha256=digest
    )
    assert stored.url == "https://members.oceantrack.org/data/repository/hfx/detection-extracts/a.zip"


async def test_put_replaces_older_version_and_skips_identical(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fs = FolderStore(root)
    old, old_digest = staged(tmp_path, "old.zip", b"old content")
    new, new_digest = staged(tmp_path, "new.zip", b"new content, longer")
    first = await fs.put(old, node="OTN", code="NSBS", name="f.zip", sha256=old_digest)
    second = await fs.put(new, node="OTN", code="NSBS", name="f.zip", sha256=new_digest)
    assert first.location == second.location
    assert (root / second.location).read_bytes() == b"new content, longer"
    assert second.copied
    again = await fs.put(new, node="OTN", code="NSBS", name="f.zip", sha256=new_digest)
    assert not again.copied
    assert store_files(root) == [second.location]


async def test_identical_file_is_found_even_when_staging_is_gone(tmp_path: Path) -> None:
    fs = FolderStore(tmp_path / "store")
    local, digest = staged(tmp_path, "f.zip", b"content")
    await fs.put(local, node="OTN", code="NSBS", name="f.zip", sha256=digest)
    local.unlink()
    again = await fs.put(local, node="OTN", code="NSBS", name="f.zip", sha256=digest)
    assert not again.copied


async def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    local, _ = staged(tmp_path, "f.zip", b"content")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(SourceError, match="sha256"):
        await FolderStore(root).put(local, node="OTN", code="NSBS", name="f.zip", sha256=wrong)
    assert store_files(root) == []


async def test_corrupted_copy_is_not_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    local, digest = staged(tmp_path, "f.zip", b"content")
    real_copy = FolderStore._copy

    def corrupting_copy(source: Path, temp: Path) -> None:
        real_copy(source, temp)
        with temp.open("ab") as fh:
            fh.write(b"!")

    monkeypatch.setattr(FolderStore, "_copy", staticmethod(corrupting_copy))
    with pytest.raises(StoreUnavailable, match="does not verify"):
        await FolderStore(root).put(local, node="OTN", code="NSBS", name="f.zip", sha256=digest)
    assert store_files(root) == []


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("..", "f.zip"),
        ("../../etc", "f.zip"),
        ("/etc", "f.zip"),
        ("NSBS", "../../../outside.zip"),
        ("NSBS", "/tmp/outside.zip"),
        ("NSBS", "sub/f.zip"),
        ("NSBS", "f\x00.zip"),
        ("NS\nBS", "f.zip"),
        ("NSBS", ".hidden"),
        ("", "f.zip"),
        ("NSBS", "..\\f.zip"),
    ],
)
async def test_traversal_is_refused(tmp_path: Path, code: str, name: str) -> None:
    root = tmp_path / "store"
    local, digest = staged(tmp_path, "f.zip", b"content")
    with pytest.raises(UnsafeName):
        await FolderStore(root).put(local, node="OTN", code=code, name=name, sha256=digest)
    assert [f for f in store_files(tmp_path) if not f.startswith("staging")] == []


async def test_symlink_out_of_the_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "data" / "repository").mkdir(parents=True)
    (root / "data" / "repository" / "nsbs").symlink_to(outside, target_is_directory=True)
    local, digest = staged(tmp_path, "f.zip", b"content")
    with pytest.raises(UnsafeName, match="outside the store"):
        await FolderStore(root).put(local, node="OTN", code="NSBS", name="f.zip", sha256=digest)
    assert list(outside.rglob("*")) == []


async def test_unwritable_folder_gives_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "data" / "repository").mkdir(parents=True)
    # a file where the project folder should be: mkdir fails whoever runs the test (root ignores modes)
    (root / "data" / "repository" / "nsbs").write_text("in the way")
    local, digest = staged(tmp_path, "f.zip", b"content")
    with pytest.raises(StoreUnavailable, match=r"cannot create folder for data/repository/nsbs"):
        await FolderStore(root).put(local, node="OTN", code="NSBS", name="f.zip", sha256=digest)


async def test_disk_full_mid_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    fs = FolderStore(root)
    old, old_digest = staged(tmp_path, "old.zip", b"the published version")
    stored = await fs.put(old, node="OTN", code="NSBS", name="f.zip", sha256=old_digest)
    new, new_digest = staged(tmp_path, "new.zip", b"the new version")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "fsync", full)
    with pytest.raises(StoreUnavailable, match="No space left"):
        await fs.put(new, node="OTN", code="NSBS", name="f.zip", sha256=new_digest)
    assert store_files(root) == [stored.location]
    assert (root / stored.location).read_bytes() == b"the published version"


async def test_missing_staged_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        await FolderStore(tmp_path / "s").put(
            tmp_path / "nope.zip", node="OTN", code="NSBS", name="f.zip", sha256="0" * 64
        )
