"""The demo network's objects, as the node databases describe them (see `shared.nodeschema`)."""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

# Tags keep transmitting after their estimated life for a while; OTN matches for this long after it.
GRACE = dt.timedelta(days=90)


def wkb_point(longitude: float, latitude: float) -> bytes:
    """Plain little-endian WKB point (21 bytes), as stored in `the_geom` / `release_geom`."""
    return struct.pack("<BIdd", 1, 1, longitude, latitude)


def codespace(tagname: str) -> str:
    """`A69-9002-11198` -> `A69-9002`."""
    return "-".join(tagname.split("-")[:2])


@dataclass(frozen=True)
class Contact:
    name: str
    email: str


@dataclass
class Project:
    code: str  # without node prefix
    node: str
    kind: str  # tracker | deployment | data
    shortname: str
    longname: str
    institution: str
    citation: str
    local_area: str
    shares_species: bool
    date_modified: dt.date
    pis: list[Contact] = field(default_factory=list)
    pocs: list[Contact] = field(default_factory=list)
    weight: float = 1.0  # share of the network's detections on its receivers
    mystery_share: float = 0.1  # share of its receivers' detections from unknown tags
    species: tuple[str, str] | None = None  # (scientific, common) of its animals

    @property
    def has_receivers(self) -> bool:
        return self.kind in ("deployment", "data")

    @property
    def has_tags(self) -> bool:
        return self.kind in ("tracker", "data")


@dataclass(frozen=True)
class Animal:
    catalog: str
    project: str
    scientific_name: str | None
    common_name: str | None


@dataclass(frozen=True)
class SensorSpec:
    """Calibration of a sensor tag: value = raw * slope + intercept."""

    type: str  # pressure | temperature
    unit: str
    slope: float
    intercept: float
    raw_low: int
    raw_high: int

    def value(self, raw: int) -> float:
        return round(raw * self.slope + self.intercept, 4)


@dataclass(frozen=True)
class TagRelease:
    tagname: str
    catalog: str
    project: str
    kind: str  # animal | sentinel
    time: dt.datetime
    locality: str
    latitude: float
    longitude: float
    life_days: int | None
    harvest: dt.datetime | None
    date_modified: dt.date
    notes: str | None = None
    sensor: SensorSpec | None = None

    @property
    def window_end(self) -> dt.datetime | None:
        """Last time a detection can match this release (None = open-ended)."""
        if self.harvest is not None:
            return self.harvest
        if self.life_days is None:
            return None
        return self.time + dt.timedelta(days=self.life_days) + GRACE

    @property
    def life_end(self) -> dt.datetime:
        """Until when the tag really transmits in the generated data (without the grace period)."""
        if self.harvest is not None:
            return self.harvest
        return self.time + dt.timedelta(days=self.life_days or 3650)

    def contains(self, t: dt.datetime) -> bool:
        end = self.window_end
        return self.time <= t and (end is None or t <= end)


@dataclass(frozen=True)
class Deployment:
    project: str
    station: str
    serial: str
    model: str
    deploy: dt.datetime
    recovery: dt.datetime | None
    latitude: float  # full precision, as surveyed
    longitude: float
    bottom_depth: float
    receiver_depth: float
    drift_seconds: float  # clock drift found at download; 0 while still in the water
    local_area: str

    @property
    def catalog(self) -> str:
        """`<station>-<model>-<serial>-<deploy YYYY_MM_DDTHH>`, OTN's deployment id."""
        return f"{self.station}-{self.model}-{self.serial}-{self.deploy:%Y_%m_%dT%H}"

    def in_water(self, t: dt.datetime) -> bool:
        return self.deploy <= t and (self.recovery is None or t < self.recovery)

    def corrected(self, uncorrected: dt.datetime) -> dt.datetime:
        """Drift-corrected time: the drift found at recovery spread linearly over the deployment."""
        if not self.drift_seconds or self.recovery is None:
            return uncorrected
        span = (self.recovery - self.deploy).total_seconds()
        shift = self.drift_seconds * (uncorrected - self.deploy).total_seconds() / span
        return uncorrected + dt.timedelta(microseconds=round(shift * 10_000) * 100)
