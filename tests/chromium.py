"""Headless Chromium for page checks: the page's own self-check marks, console errors, a screenshot.

`chromium_or_skip()` skips a test with the reason when no Chromium is installed, and fails it instead
when OTN_PUSH_REQUIRE_CHROMIUM=1 (as in CI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_or_skip() -> str:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "no headless Chromium (apt-get install -y chromium)"
    if os.environ.get("OTN_PUSH_REQUIRE_CHROMIUM") == "1":
        pytest.fail(reason + " but OTN_PUSH_REQUIRE_CHROMIUM=1")
    pytest.skip(reason)


@dataclass
class PageCheck:
    attributes: dict[str, str]  # the <body> attributes after load
    console_errors: list[str]  # console messages and uncaught errors Chromium logged


def _run(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="otn-push-chromium-") as profile:
        return subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def check_page(binary: str, page: Path) -> PageCheck:
    """Load the page, return the body's attributes after load and any console error Chromium logged."""
    done = _run(binary, "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body is not None, done.stdout[:2000]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    # Chromium logs every console message as `INFO:CONSOLE…` without its level; our pages log nothing,
    # so any message at all counts
    errors = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return PageCheck(attributes, errors)


def screenshot(binary: str, page: Path, out: Path, size: str = "1100,2400") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _run(
        binary,
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--screenshot={out.resolve()}",
        page.resolve().as_uri(),
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return out
