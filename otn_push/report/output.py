"""Writing the report page: atomically, so a reader (a web server publishing it) never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(out: Path, page: str) -> None:
    """Write `page` to a hidden temporary file beside `out`, then rename it over `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
