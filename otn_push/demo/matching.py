"""Matching as OTN does it: place a detection at a receiver deployment, match its tag to one release.

A detection of tag C at time T on receiver R is placed at the deployment of R in the water at T, and
matched to the release of C whose window (release to harvest, or to release + tag life + grace) contains
T. One animal release -> `animal`; a sentinel (test / transceiver) tag -> `sentinel`; no release or two
candidate releases (ambiguous) -> `unqualified`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from otn_push.demo.model import Deployment, TagRelease
from shared.nodeschema import MATCH_ANIMAL, MATCH_SENTINEL, MATCH_UNQUALIFIED


class Unplaceable(ValueError):
    """A detection on a receiver that was not in the water at that time: it must be reported."""


@dataclass(frozen=True)
class Match:
    relationship: str
    tracker: str | None
    animal: str | None


UNQUALIFIED = Match(MATCH_UNQUALIFIED, None, None)


class DeploymentIndex:
    """Receiver serial + time -> the deployment in the water."""

    def __init__(self, deployments: Iterable[Deployment]) -> None:
        by_serial: dict[str, list[Deployment]] = defaultdict(list)
        for dep in deployments:
            by_serial[dep.serial].append(dep)
        self._by_serial = {serial: sorted(deps, key=lambda d: d.deploy) for serial, deps in by_serial.items()}
        self._starts = {serial: [d.deploy for d in deps] for serial, deps in self._by_serial.items()}

    def place(self, serial: str, t: dt.datetime) -> Deployment:
        deps = self._by_serial.get(serial, [])
        i = bisect.bisect_right(self._starts.get(serial, []), t) - 1
        if i >= 0 and deps[i].in_water(t):
            return deps[i]
        raise Unplaceable(f"receiver {serial} has no deployment in the water at {t:%Y-%m-%d %H:%M:%S}")


class ReleaseIndex:
    """Tag code + time -> the match result."""

    def __init__(self, releases: Iterable[TagRelease]) -> None:
        by_tag: dict[str, list[TagRelease]] = defaultdict(list)
        for rel in releases:
            by_tag[rel.tagname].append(rel)
        self._by_tag = dict(by_tag)

    def releases(self, tagname: str) -> list[TagRelease]:
        return self._by_tag.get(tagname, [])

    def match(self, tagname: str, t: dt.datetime) -> Match:
        candidates = [r for r in self._by_tag.get(tagname, ()) if r.contains(t)]
        if len(candidates) != 1:
            return UNQUALIFIED
        rel = candidates[0]
        if rel.kind == "sentinel":
            return Match(MATCH_SENTINEL, rel.project, None)
        return Match(MATCH_ANIMAL, rel.project, rel.catalog)
