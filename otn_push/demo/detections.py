"""Detections of a demo network, generated receiver download by download and matched as OTN does.

Each receiver deployment's time in the water is cut into monthly slices; every slice gets its share of
the requested detections (by the project's weight) plus the scenario bursts that fall in it, and is
generated from its own random stream, so the rows depend only on the seed, never on batch sizes. Rows come
out slice by slice: memory stays flat whatever the number of detections.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from otn_push.demo.matching import DeploymentIndex, ReleaseIndex
from otn_push.demo.model import Deployment, SensorSpec, TagRelease, codespace, wkb_point
from otn_push.demo.network import Burst, Network
from shared.nodeschema import MATCH_ANIMAL, D

# column order of every detection record (matches the tuples `generate_detections` yields)
COLUMNS = (
    D.project, D.detection_id, D.receiver, D.station, D.rcvrcatnumber, D.latitude, D.longitude, D.geom,
    D.bottom_depth, D.receiver_depth, D.tagname, D.codespace, D.sensorname, D.sensorraw, D.sensortype,
    D.sensorvalue, D.sensorunit, D.datecollected, D.datecollected_uncorrected, D.date_modified,
    D.relationship, D.tracker, D.animal,
)  # fmt: skip

FIRST_DETECTION_ID = 2_200_000
SENTINEL_SHARE = 0.08
# networks grow: every year of data holds this many times the detections of the year before (more
# receivers, more tagged animals), so the latest full year is the largest, as in OTN's push reports
YEAR_GROWTH = 1.5
# bump when the rows a seed makes change without the network plan changing (benchmarks then reseed)
GENERATOR_VERSION = 2
Record = tuple[object, ...]


@dataclass
class Slice:
    deployment: Deployment
    start: dt.datetime
    end: dt.datetime
    background: int = 0
    bursts: list[Burst] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.background + sum(b.count for b in self.bursts)


@dataclass
class Tally:
    """What was generated: rows per (receiver project, year, relationship, tag project)."""

    rows: Counter[tuple[str, int, str, str | None]] = field(default_factory=Counter)
    cross_node: int = 0
    fractional: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def plan_slices(net: Network) -> list[Slice]:
    """Monthly slices of every deployment in the data window, with their detection counts."""
    slices: list[Slice] = []
    for dep in sorted(
        net.deployments, key=lambda d: (list(net.projects).index(d.project), d.deploy, d.station)
    ):
        # margins keep drift-corrected times inside the deployment and inside the data years
        start = max(dep.deploy + dt.timedelta(hours=1), net.data_start + dt.timedelta(minutes=10))
        stop = min(
            dep.recovery - dt.timedelta(hours=1) if dep.recovery else net.data_end,
            net.data_end - dt.timedelta(minutes=10),
        )
        t = start
        while t < stop:
            month_end = dt.datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
            slices.append(Slice(dep, t, min(month_end, stop)))
            t = month_end
    for burst in net.scenario:
        home = next(
            (s for s in slices if s.deployment is burst.deployment and s.start <= burst.start < s.end), None
        )
        if home is None:
            raise ValueError(f"scenario burst of {burst.tagname} at {burst.start} is outside the data window")
        home.bursts.append(burst)
    scenario = sum(b.count for b in net.scenario)
    background = net.detections - scenario
    if background < 0:
        raise ValueError(f"detections must be at least {scenario} for this network, got {net.detections}")
    _allocate(net, slices, background)
    return slices


def _allocate(net: Network, slices: list[Slice], total: int) -> None:
    """Share `total` among slices by project weight, year growth and slice length (exact sum).

    A project's share is its weight; within the project, a slice's share is its length times the growth
    of its year, so a project in the water all along has most of its rows in the latest years.
    """
    first = net.years[0]
    span = {id(s): (s.end - s.start).total_seconds() * YEAR_GROWTH ** (s.start.year - first) for s in slices}
    per_project: dict[str, float] = {}
    for s in slices:
        per_project[s.deployment.project] = per_project.get(s.deployment.project, 0.0) + span[id(s)]
    weight_sum = sum(net.projects[p].weight for p in per_project)
    shares = [
        total * net.projects[s.deployment.project].weight / weight_sum * span[id(s)]
        / per_project[s.deployment.project]
        for s in slices
    ]  # fmt: skip
    for s, share in zip(slices, shares, strict=True):
        s.background = int(share)
    # largest remainder: the shares add up to exactly `total`
    left = total - sum(s.background for s in slices)
    order = sorted(range(len(slices)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in order[:left]:
        slices[i].background += 1


class _Generator:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.places = DeploymentIndex(net.deployments)
        self.matches = ReleaseIndex(net.releases)
        self.sensors: dict[str, SensorSpec] = {r.tagname: r.sensor for r in net.releases if r.sensor}
        self.visitors: dict[str, list[TagRelease]] = {}
        for rel in net.releases:
            if rel.kind != "animal" or rel.tagname in net.background_excluded:
                continue
            for array in net.ranges.get(rel.project, []):
                self.visitors.setdefault(array, []).append(rel)
        self.sentinels: dict[str, list[TagRelease]] = {}
        for rel in net.releases:
            if rel.kind == "sentinel":
                self.sentinels.setdefault(rel.project, []).append(rel)
        self.next_id = FIRST_DETECTION_ID
        self.tally = Tally()
        self._dep_cache: dict[int, tuple[object, ...]] = {}

    def _deployment_values(self, dep: Deployment) -> tuple[object, ...]:
        cached = self._dep_cache.get(id(dep))
        if cached is None:
            modified = dep.recovery.date() + dt.timedelta(days=25) if dep.recovery else self.net.push_date
            cached = (
                dep.catalog,
                round(dep.latitude, 5),
                round(dep.longitude, 5),
                wkb_point(dep.longitude, dep.latitude),
                min(modified, self.net.push_date - dt.timedelta(days=1)),
            )
            self._dep_cache[id(dep)] = cached
        return cached

    def slice_rows(self, sl: Slice) -> list[Record]:
        dep = sl.deployment
        rng = random.Random(f"{self.net.seed}/{dep.catalog}/{sl.start:%Y%m%d%H}")
        pings: list[tuple[dt.datetime, str]] = []
        for burst in sl.bursts:
            pings.extend(_pings(rng, burst.tagname, burst.start, burst.count, burst.interval, dep.recovery))
        project = self.net.projects[dep.project]
        visitors = [
            r for r in self.visitors.get(dep.project, []) if r.time < sl.end and r.life_end > sl.start
        ]
        sentinels = [r for r in self.sentinels.get(dep.project, []) if r.time < sl.start]
        mystery = self.net.mystery_tags.get(dep.project, [])
        remaining = sl.background
        while remaining > 0:
            draw = rng.random()
            lo, hi = sl.start, sl.end
            if draw < SENTINEL_SHARE and sentinels:
                tag = rng.choice(sentinels).tagname
            elif draw < SENTINEL_SHARE + project.mystery_share or not visitors:
                tag = rng.choice(mystery) if mystery else f"A69-1601-{rng.randint(20000, 29999)}"
            else:
                rel = rng.choice(visitors)
                tag = rel.tagname
                lo, hi = max(lo, rel.time + dt.timedelta(hours=6)), min(hi, rel.life_end)
                if lo >= hi:
                    lo, hi = sl.start, sl.end
            begin = lo + dt.timedelta(seconds=rng.uniform(0, (hi - lo).total_seconds()))
            count = min(remaining, rng.randint(2, 30))
            got = _pings(rng, tag, begin.replace(microsecond=0), count, rng.uniform(45, 200), hi)
            pings.extend(got)
            remaining -= len(got)
        pings.sort()
        return [self._record(rng, dep, tag, t) for t, tag in pings]

    def _record(self, rng: random.Random, dep: Deployment, tag: str, uncorrected: dt.datetime) -> Record:
        catalog, lat, lon, geom, modified = self._deployment_values(dep)
        corrected = dep.corrected(uncorrected)
        placed = self.places.place(dep.serial, corrected)
        if placed is not dep:
            raise AssertionError(f"detection on {dep.catalog} placed at {placed.catalog}")
        match = self.matches.match(tag, corrected)
        sensor = self.sensors.get(tag)
        raw: float | None = None
        if sensor is not None:
            high = sensor.raw_high
            if sensor.type == "pressure":  # an animal is never deeper than the bottom at the receiver
                high = max(
                    sensor.raw_low, min(high, int((dep.bottom_depth - sensor.intercept) / sensor.slope))
                )
            raw = float(rng.randint(sensor.raw_low, high))
        matched = match.relationship != "unqualified"
        if sensor and raw is not None:
            name, stype = tag, sensor.type if matched else None
            value, unit = (sensor.value(int(raw)), sensor.unit) if matched else (None, None)
        else:
            name, stype, value, unit = None, "pinger" if matched else None, None, None
        detection_id = self.next_id
        self.next_id += 1
        year = corrected.year
        self.tally.rows[(dep.project, year, match.relationship, match.tracker)] += 1
        if corrected.microsecond:
            self.tally.fractional += 1
        if match.relationship == MATCH_ANIMAL and match.tracker is not None:
            if self.net.node_of(match.tracker) != self.net.node_of(dep.project):
                self.tally.cross_node += 1
        return (
            dep.project, detection_id, dep.serial, dep.station, catalog, lat, lon, geom, dep.bottom_depth,
            dep.receiver_depth, tag, codespace(tag), name, raw, stype, value, unit, corrected, uncorrected,
            modified, match.relationship, match.tracker, match.animal,
        )  # fmt: skip


def _pings(
    rng: random.Random, tag: str, start: dt.datetime, count: int, interval: float, stop: dt.datetime | None
) -> list[tuple[dt.datetime, str]]:
    """`count` pings from `start`, whole seconds apart, never at or after `stop` (at least one ping)."""
    out = [(start, tag)]
    t = start
    for _ in range(count - 1):
        t = t + dt.timedelta(seconds=round(interval * rng.uniform(0.6, 1.4)))
        if stop is not None and t >= stop:
            break
        out.append((t, tag))
    return out


def generate_detections(net: Network, tally: Tally | None = None) -> Iterator[tuple[str, list[Record]]]:
    """Yield (node of the receiver project, rows) per slice; fills `tally` as it goes."""
    gen = _Generator(net)
    if tally is not None:
        gen.tally = tally
    for sl in plan_slices(net):
        rows = gen.slice_rows(sl)
        if rows:
            yield net.node_of(sl.deployment.project), rows
