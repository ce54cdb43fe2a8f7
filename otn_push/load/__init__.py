"""Loading OTN detection extract files into the node databases (`otn-push load`).

Every file is read and validated whole before anything is written; a file that cannot be loaded raises
`LoadError` naming the file, the row and the column, and nothing of it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from otn_push.load.collect import Collected, collect
from otn_push.load.reader import LoadError, open_extract
from otn_push.load.writer import NodeCounts, WriteReport, write_collected

Status = Callable[[str, int], None]


def parse_file(
    path: Path, nodes: dict[str, str], default_node: str | None = None, progress: Status | None = None
) -> Collected:
    f = open_extract(Path(path))
    report = (lambda n: progress(f.name, n)) if progress is not None else None
    return collect(f, nodes, default_node.upper() if default_node else None, report)


async def load_files(
    nodes: dict[str, str],
    paths: list[Path],
    default_node: str | None = None,
    progress: Status | None = None,
) -> list[WriteReport]:
    """Parse every file first (a bad one refuses the whole load), then write them one by one."""
    parsed = [parse_file(p, nodes, default_node, progress) for p in paths]
    reports = []
    for c in parsed:
        reports.append(await write_collected(nodes, c))
    return reports


__all__ = ["LoadError", "NodeCounts", "WriteReport", "load_files", "parse_file"]
