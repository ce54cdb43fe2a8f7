"""`otn-push push status`: a warning every extract of a project carries is shown once, not on each row."""

from __future__ import annotations

from typing import Any

import pytest

from otn_push.cli.push_cmd import print_status, project_warnings

NO_CONTACT = "PI 'Pat Doe' has no email address"


def job(extract: str, *warnings: str) -> dict[str, Any]:
    return {"id": 1, "extract": extract, "node": "OTN", "state": "completed", "reason": None, "rows": 3,
            "files": [], "warnings": list(warnings)}  # fmt: skip


def test_only_warnings_shared_by_every_extract_of_a_project_are_the_project_s() -> None:
    jobs = [
        job("NSBS,2024,t", "12 detections at receiver VR2W-1 have no deployment", NO_CONTACT),
        job("NSBS,2025,t", NO_CONTACT),
        job("HFX,2025,q", "HFX,2025,q holds no detections: no email sent"),  # one extract: its own
    ]
    assert project_warnings(jobs) == {"NSBS": [NO_CONTACT]}


def test_push_status_prints_a_project_warning_once(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {
        "push_date": "2026-10-15",
        "run": {"state": "completed", "format": "2025", "requested_by": "cli",
                "started_at": "2026-10-15T10:00", "finished_at": None, "warnings": []},
        "counts": {"completed": 3},
        "jobs": [job("NSBS,2024,t", "12 detections at receiver VR2W-1 have no deployment", NO_CONTACT),
                 job("NSBS,2025,t", NO_CONTACT), job("NSBS,2023,t", NO_CONTACT)],
    }  # fmt: skip
    print_status(doc)
    out = capsys.readouterr().out
    assert out.count(NO_CONTACT) == 1
    assert f"warning: NSBS (every extract): {NO_CONTACT}" in out
    assert "12 detections at receiver VR2W-1 have no deployment" in out
