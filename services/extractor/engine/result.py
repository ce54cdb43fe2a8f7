"""What building an extract returns, and the one permanent error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ExtractInputError(ValueError):
    """Permanent: the extract cannot be built from this input (unknown project, bad type or year, …)."""


@dataclass(frozen=True)
class BuiltFile:
    name: str
    path: Path
    size: int
    sha256: str
    kind: str  # "zip" | "parquet"


@dataclass(frozen=True)
class ExtractResult:
    code: str
    year: int
    type: str
    format: str
    node: str
    basename: str
    files: list[BuiltFile]
    rows: int
    summary: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # seconds per phase: csv (connect, plan and the streamed CSV), zip, parquet (in parallel), total
    timings: dict[str, float] = field(default_factory=dict)
