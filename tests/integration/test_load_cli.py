"""`otn-push load` and `otn-push extract` through the real command line (typer app, real databases)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otn_push.cli import app
from tests.conftest import NodeFactory
from tests.integration.test_load import QUALIFIED_HEADER, qualified_row

pytestmark = pytest.mark.integration


@pytest.fixture
async def cli_nodes(make_nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    nodes = await make_nodes("OTN", "ACT")
    monkeypatch.setenv("OTN_PUSH_NODES", ";".join(f"{k}={v}" for k, v in nodes.items()))
    monkeypatch.setenv("OTN_PUSH_HOME_NODE", "OTN")
    return nodes


def test_load_then_extract_from_the_command_line(cli_nodes: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "arr_qualified_detections_2017.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(QUALIFIED_HEADER)
        writer.writerows([qualified_row(1, "2017-04-08T05:34:00Z"), qualified_row(2, "2017-05-01 00:00:01")])
    runner = CliRunner()

    refused = runner.invoke(app, ["load", str(source)])
    assert refused.exit_code == 1
    assert "arr_qualified_detections_2017.csv, row 1, column collectioncode" in refused.output
    assert "--node" in refused.output

    loaded = runner.invoke(app, ["load", "--node", "ACT", str(source)])
    assert loaded.exit_code == 0, loaded.output
    assert "ACT: 2 detections" in loaded.output and loaded.output.splitlines()[0].strip()

    out = tmp_path / "out"
    built = runner.invoke(app, ["extract", "ARR", "2017", "q", "--out", str(out), "--format", "legacy"])
    assert built.exit_code == 0, built.output
    # in a pipe no progress bar is drawn, not even the blank line a finished one leaves
    assert built.output.startswith("arr_qualified_detections_2017: 2 rows (node ACT, format legacy)\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "arr_qualified_detections_2017.parquet",
        "arr_qualified_detections_2017.zip",
    ]

    unknown = runner.invoke(app, ["extract", "NOPE", "2017", "q", "--out", str(out)])
    assert unknown.exit_code == 1 and "project NOPE is not known" in unknown.output
    # a failed extract leaves no folder it made; a node that is down is named, not --out
    fresh = tmp_path / "new" / "folder"
    unknown = runner.invoke(app, ["extract", "NOPE", "2017", "q", "--out", str(fresh)])
    assert unknown.exit_code == 1 and not (tmp_path / "new").exists()
    down = {"OTN_PUSH_NODES": "OTN=postgresql://postgres@127.0.0.1:1/nope"}
    failed = runner.invoke(app, ["extract", "ARR", "2017", "q", "--out", str(fresh)], env=down)
    assert failed.exit_code == 1 and "node OTN database unreachable" in failed.output
    assert "--out" not in failed.output and not (tmp_path / "new").exists()
    a_file = out / "arr_qualified_detections_2017.zip"
    refused = runner.invoke(app, ["extract", "ARR", "2017", "q", "--out", str(a_file)])
    assert refused.exit_code == 1 and "is a file, not a folder" in refused.output


def test_a_missing_file_is_refused_and_the_others_still_load(
    cli_nodes: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "arr_qualified_detections_2017.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(QUALIFIED_HEADER)
        writer.writerow(qualified_row(1, "2017-04-08T05:34:00Z"))
    missing = tmp_path / "missing.csv"
    result = CliRunner().invoke(app, ["load", "--node", "ACT", str(missing), str(tmp_path), str(source)])
    assert result.exit_code == 1
    assert f"refused {missing}: no such file" in result.output
    assert f"refused {tmp_path}: is a folder, not a file" in result.output
    loaded = "loaded arr_qualified_detections_2017.csv (qualified, 1 rows) -> ACT: 1 detections"
    assert loaded in result.output
    assert "2 of 3 file(s) refused" in result.output
