"""How the Plone store names what went wrong, without a server (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from services.uploader.plone_store import PloneStore, plone_id
from services.uploader.store import StoreError, StoreUnavailable, UnsafeName

SITE = "https://plone.example.org/Plone"
PASSWORD = "pw-that-must-not-show"


def store(handler: httpx.MockTransport) -> PloneStore:
    return PloneStore(SITE, "uploader", PASSWORD, transport=handler)


def staged(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "x_2024.zip"
    path.write_bytes(b"x")
    return path, hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("status", "transient", "words"),
    [(401, False, "service account 'uploader' is not allowed"), (403, False, "not allowed"),
     (503, True, "HTTP 503"), (500, True, "HTTP 500"), (429, True, "HTTP 429")],
)  # fmt: skip
async def test_status_errors(tmp_path: Path, status: int, transient: bool, words: str) -> None:
    path, sha = staged(tmp_path)
    with pytest.raises(StoreError) as raised:
        await store(httpx.MockTransport(lambda request: httpx.Response(status))).put(
            path, node="OTN", code="NSBS", name=path.name, sha256=sha
        )
    assert raised.value.transient is transient
    assert words in str(raised.value) and SITE in str(raised.value) and PASSWORD not in str(raised.value)


async def test_connection_refused_is_transient(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    path, sha = staged(tmp_path)
    with pytest.raises(StoreUnavailable, match="ConnectError"):
        await store(httpx.MockTransport(refuse)).put(
            path, node="OTN", code="NSBS", name=path.name, sha256=sha
        )


async def test_unsafe_names_are_refused_before_any_request(tmp_path: Path) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    path, sha = staged(tmp_path)
    for code, name in (("../x", path.name), ("NSBS", "../../x.zip"), ("NSBS", ".hidden")):
        with pytest.raises(UnsafeName):
            await store(httpx.MockTransport(never)).put(path, node="OTN", code=code, name=name, sha256=sha)


def test_plone_id_hint() -> None:
    assert plone_id("x_2024.parquet") == "x_2024-parquet"
    assert plone_id("nsbs_matched_detections_2022.zip") == "nsbs_matched_detections_2022.zip"
