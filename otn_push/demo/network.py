"""The plan of a demo network: projects, contacts, animals, tag releases, receiver deployments.

A hand-written core (seven projects on the given nodes, with every case the push must handle: a
redeployed receiver, a double-tagged animal, a harvested animal, a tag re-used on a second animal, a tag
registered twice, sentinel tags, mystery tags, species shared or not with array owners) plus, for large
networks, generated projects with a few huge ones and many small ones. Everything is derived from the
seed, so the same seed gives the same network.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass, field

from otn_push.demo.model import Animal, Contact, Deployment, Project, SensorSpec, TagRelease

MIN_DETECTIONS = 1000
SMALL_NETWORK = 20_000  # up to this many detections: the core projects only, two years

PRESSURE = SensorSpec("pressure", "Meters", 0.6065, -1.5165, 2, 120)
TEMPERATURE = SensorSpec("temperature", "°C", 0.1575, -5.1975, 100, 200)


@dataclass(frozen=True)
class Region:
    name: str
    lat: tuple[float, float]
    lon: tuple[float, float]
    localities: tuple[str, ...]


REGIONS = (
    Region(
        "Nova Scotia", (43.9, 46.4), (-65.4, -59.8), ("Eastern Passage, Nova Scotia", "Sable Island Bank")
    ),
    Region("Mid-Atlantic Bight", (36.6, 39.4), (-76.6, -74.2), ("Coastal Maryland", "Delaware Bay")),
    Region("Florida", (24.6, 29.4), (-81.9, -80.1), ("Jupiter Inlet", "Florida Keys")),
    Region("Salish Sea", (47.3, 48.9), (-124.4, -122.5), ("Haro Strait", "Puget Sound")),
    Region("Galapagos", (-1.3, 1.5), (-91.9, -89.3), ("Darwin Island", "Wolf Island")),
    Region("Gulf of Mexico", (26.0, 29.8), (-95.5, -83.5), ("Mobile Bay", "Tampa Bay")),
)

SPECIES = (
    ("Prionace glauca", "blue shark"),
    ("Carcharhinus plumbeus", "sandbar shark"),
    ("Morone saxatilis", "striped bass"),
    ("Acipenser oxyrinchus", "Atlantic sturgeon"),
    ("Carcharias taurus", "sand tiger"),
    ("Salmo salar", "Atlantic salmon"),
    ("Gadus morhua", "Atlantic cod"),
    ("Thunnus thynnus", "Atlantic bluefin tuna"),
    ("Carcharodon carcharias", "white shark"),
    ("Anguilla rostrata", "American eel"),
    ("Galeocerdo cuvier", "tiger shark"),
    ("Megalops atlanticus", "tarpon"),
    ("Sphyrna lewini", "scalloped hammerhead"),
    ("Oncorhynchus kisutch", "coho salmon"),
)

FIRST_NAMES = (
    "Amelia", "Brendan", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiroshi", "Isla", "Jonas", "Kaia",
    "Léa", "Maya", "Noor", "Oscar", "Priya", "Quinn", "Rosa", "Samuel", "Tala", "Umar", "Vera", "Wes",
    "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Arsenault", "Boudreau", "Castillo", "Doucette", "Eriksen", "Fontaine", "Gallagher", "Haddad",
    "Ivanova", "Jardine", "Kowalczyk", "LeBlanc", "MacIsaac", "Nakamura", "O'Connell", "Pereira",
    "Quinlan", "Robichaud", "Saunders", "Thériault", "Underhill", "Valdez", "Whitman", "Xu", "Young",
)  # fmt: skip


def _email(name: str, institution: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    first, last = ascii_name.split(" ", 1)
    local = f"{first[0]}.{last}".lower().replace("'", "").replace(" ", "")
    return f"{local}@{institution.lower()}.example.org"


def _person(name: str, institution: str) -> Contact:
    return Contact(name, _email(name, institution))


@dataclass
class Burst:
    """Detections of one tag passing one receiver: `count` pings from `start` (instrument time)."""

    deployment: Deployment
    tagname: str
    start: dt.datetime
    count: int
    interval: float  # mean seconds between pings


@dataclass
class Network:
    seed: int
    push_date: dt.date
    nodes: list[str]
    home_node: str
    years: list[int]
    detections: int
    projects: dict[str, Project] = field(default_factory=dict)
    animals: list[Animal] = field(default_factory=list)
    releases: list[TagRelease] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    ranges: dict[str, list[str]] = field(default_factory=dict)  # tag project -> arrays its animals visit
    mystery_tags: dict[str, list[str]] = field(default_factory=dict)  # array -> unknown tags heard there
    scenario: list[Burst] = field(default_factory=list)  # bursts every network must contain
    background_excluded: set[str] = field(default_factory=set)  # tags only the scenario emits
    special: dict[str, list[TagRelease]] = field(default_factory=dict)  # the core's special cases

    @property
    def data_start(self) -> dt.datetime:
        return dt.datetime(self.years[0], 1, 1)

    @property
    def data_end(self) -> dt.datetime:
        return dt.datetime(self.years[-1] + 1, 1, 1)

    def node_of(self, code: str) -> str:
        return self.projects[code].node

    def deployment_at(self, project: str, t: dt.datetime, station: str | None = None) -> Deployment:
        """The project's deployment in the water at t (at the station, if given); a gap moves t on."""
        for shift in range(0, 20):
            when = t + dt.timedelta(days=2 * shift)
            for dep in self.deployments:
                if dep.project == project and dep.in_water(when) and station in (None, dep.station):
                    return dep
        raise LookupError(f"no {project} deployment in the water near {t:%Y-%m-%d}")


class _Codes:
    """Network-wide unique tag codes per code space."""

    def __init__(self) -> None:
        self._next = {"A69-9002": 11190, "A69-1601": 46060, "A69-1303": 59760, "A180-1702": 61000}

    def take(self, space: str) -> str:
        number = self._next[space]
        self._next[space] = number + 1
        return f"{space}-{number}"


class _Serials:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def take(self, model: str) -> str:
        low, high = {"VR2W": (101000, 139999), "VR2AR": (545000, 549999), "VR2Tx": (480000, 489999)}[model]
        while True:
            serial = str(self._rng.randint(low, high))
            if serial not in self._used:
                self._used.add(serial)
                return serial


def build_network(
    nodes: list[str],
    *,
    seed: int,
    push_date: dt.date,
    detections: int,
    years: int | None = None,
    home_node: str | None = None,
) -> Network:
    if len(nodes) < 2:
        raise ValueError(f"a demo network needs at least two nodes, got {len(nodes)} ({', '.join(nodes)})")
    if detections < MIN_DETECTIONS:
        raise ValueError(f"detections must be at least {MIN_DETECTIONS}, got {detections}")
    if home_node is not None and home_node not in nodes:
        raise ValueError(f"home node {home_node} is not one of the nodes ({', '.join(nodes)})")
    n_years = years or (2 if detections <= SMALL_NETWORK else 4)
    if n_years < 2:
        raise ValueError(f"years must be at least 2, got {n_years}")
    last = push_date.year - 1
    net = Network(
        seed=seed,
        push_date=push_date,
        nodes=list(nodes),
        home_node=home_node or nodes[0],
        years=list(range(last - n_years + 1, last + 1)),
        detections=detections,
    )
    rng = random.Random(seed)
    codes = _Codes()
    serials = _Serials(rng)
    _core(net, rng, codes, serials)
    if detections > SMALL_NETWORK:
        _extra(net, rng, codes, serials)
    _scenario(net, rng)
    return net


# --- the hand-written core -------------------------------------------------------------------------


def _core(net: Network, rng: random.Random, codes: _Codes, serials: _Serials) -> None:
    y0 = net.years[0]
    n0, n1, n2 = (net.nodes[i % len(net.nodes)] for i in range(3))
    people = {
        key: _person(name, inst)
        for key, name, inst in [
            ("whitman", "Wes Whitman", "OTN"),
            ("boudreau", "Chloe Boudreau", "OTN"),
            ("macisaac", "Brendan MacIsaac", "OTN"),
            ("haddad", "Farid Haddad", "OTN"),
            ("oconnell", "Grace O'Connell", "OTN"),
            ("castillo", "Rosa Castillo", "SERC"),
            ("pereira", "Priya Pereira", "SERC"),
            ("nakamura", "Hiroshi Nakamura", "UMCES"),
            ("young", "Zoe Young", "UMCES"),
            ("theriault", "Léa Thériault", "SEFSC"),
            ("valdez", "Ximena Valdez", "FWC"),
            ("jardine", "Jonas Jardine", "FWC"),
            ("eriksen", "Elena Eriksen", "DNREC"),
            ("quinlan", "Quinn Quinlan", "DNREC"),
        ]
    }

    def project(
        code: str,
        node: str,
        kind: str,
        longname: str,
        inst: str,
        area: str,
        *,
        pis: list[str],
        pocs: list[str],
        since: int,
        shares: bool = True,
        weight: float = 1.0,
        mystery_share: float = 0.1,
        species: tuple[str, str] | None = None,
    ) -> None:
        lead = people[pis[0]]
        net.projects[code] = Project(
            code=code,
            node=node,
            kind=kind,
            shortname=code,
            longname=longname,
            institution=inst,
            citation=f"{lead.name.split(' ', 1)[1]}, {lead.name[0]}. {since}. {longname}",
            local_area=area,
            shares_species=shares,
            date_modified=dt.date(y0 - 1, 1 + rng.randrange(12), 1 + rng.randrange(28)),
            pis=[people[k] for k in pis],
            pocs=[people[k] for k in pocs],
            weight=weight,
            mystery_share=mystery_share,
            species=species,
        )

    project(
        "NSBS",
        n0,
        "tracker",
        "Nova Scotia Blue Shark Tracking",
        "OTN",
        "Eastern Passage, Nova Scotia",
        pis=["whitman", "boudreau"],
        pocs=["boudreau", "macisaac"],
        since=2013,
        species=SPECIES[0],
    )
    project(
        "HFX",
        n0,
        "deployment",
        "Ocean Tracking Network Halifax Line",
        "OTN",
        "HALIFAX",
        pis=["haddad", "whitman"],
        pocs=["oconnell"],
        since=2009,
        weight=3.0,
        mystery_share=0.12,
    )
    project(
        "SERC1",
        n1,
        "deployment",
        "Chesapeake Bay Receiver Array",
        "SERC",
        "Chesapeake Bay",
        pis=["castillo"],
        pocs=["pereira"],
        since=2016,
        weight=2.0,
        mystery_share=0.2,
    )
    project(
        "MDWEA",
        n1,
        "data",
        "Fish Movements in the Maryland Wind Energy Area",
        "UMCES",
        "Ocean City",
        pis=["nakamura"],
        pocs=["young", "pereira"],
        since=2016,
        weight=1.5,
        mystery_share=0.1,
        shares=False,
        species=SPECIES[2],
    )
    project(
        "ATSTUR",
        n1,
        "tracker",
        "Atlantic Sturgeon Migrations of the Delaware River",
        "DNREC",
        "Delaware Bay",
        pis=["eriksen"],
        pocs=["quinlan", "castillo"],
        since=2018,
        species=SPECIES[3],
    )
    project(
        "SUBUL",
        n2,
        "tracker",
        "Sandbar Shark Movements off the Southeast United States",
        "SEFSC",
        "Jupiter Inlet",
        pis=["theriault"],
        pocs=["theriault"],
        since=2015,
        shares=False,
        species=SPECIES[1],
    )
    project("FLKEYS", n2, "deployment", "Florida Keys Receiver Array", "FWC", "Florida Keys",
            pis=["valdez"], pocs=["jardine"], since=2014, weight=1.5, mystery_share=0.3)  # fmt: skip

    net.ranges.update(
        NSBS=["HFX", "SERC1", "FLKEYS"],
        MDWEA=["MDWEA", "SERC1", "HFX"],
        ATSTUR=["SERC1", "MDWEA", "HFX"],
        SUBUL=["FLKEYS", "SERC1", "MDWEA"],
    )

    # receivers: HFX swaps its VR2ARs yearly, moving each to the next station (every receiver is
    # redeployed elsewhere); SERC1 and FLKEYS service VR2Ws twice a year; MDWEA leaves VR2ARs two years.
    _array(
        net,
        rng,
        serials,
        "HFX",
        "VR2AR",
        [(44.5, -63.51), (44.1, -63.27)],
        6,
        "HFX",
        months=12,
        first=dt.datetime(y0 - 1, 4, 10, 9),
    )
    _array(
        net,
        rng,
        serials,
        "SERC1",
        "VR2W",
        [(39.05, -76.42), (38.32, -76.36)],
        4,
        "",
        names=["HIGHIS", "SMSPIER", "PKNTPT", "CBL"],
        months=6,
        first=dt.datetime(y0 - 1, 11, 3, 8),
    )
    _array(
        net,
        rng,
        serials,
        "MDWEA",
        "VR2AR",
        [(38.31, -75.02), (38.36, -74.78)],
        3,
        "",
        names=["IS1", "IS2", "OS1"],
        months=24,
        first=dt.datetime(y0 - 1, 6, 14, 12),
    )
    _array(net, rng, serials, "FLKEYS", "VR2W", [(25.23, -80.3), (24.55, -81.45)], 4, "FLK", months=6,
           first=dt.datetime(y0 - 1, 9, 2, 10))  # fmt: skip

    first_hfx = min(d.deploy for d in net.deployments if d.project == "HFX")
    for k, station in enumerate(("HFX002", "HFX005")):
        dep = next(d for d in net.deployments if d.project == "HFX" and d.station == station)
        _sentinel(net, codes.take("A69-1601"), "HFX", k + 1, "reference tag", first_hfx, dep)
    first_serc = min(d.deploy for d in net.deployments if d.project == "SERC1")
    dep = next(d for d in net.deployments if d.project == "SERC1" and d.station == "HIGHIS")
    _sentinel(net, codes.take("A180-1702"), "SERC1", 1, "range test tag", first_serc, dep)

    # animals: a few normal ones per tag project, then the special cases
    for code, space, count in (("NSBS", "A69-9002", 5), ("MDWEA", "A69-1601", 5), ("ATSTUR", "A69-1601", 4),
                               ("SUBUL", "A69-1303", 5)):  # fmt: skip
        for _ in range(count):
            _animal(net, rng, code, [codes.take(space)], _release_time(rng, net), rng.randint(500, 1400))

    sensor_pair = [codes.take("A69-9002"), codes.take("A69-9002")]
    net.special["double"] = _animal(
        net,
        rng,
        "NSBS",
        sensor_pair,
        dt.datetime(y0 - 1, 9, 19),
        900,
        sensors=[PRESSURE, TEMPERATURE],
        notes="double tagged: pressure and temperature transmitters",
    )
    net.special["harvested"] = _animal(
        net,
        rng,
        "NSBS",
        [codes.take("A69-9002")],
        dt.datetime(y0 - 1, 10, 1, 14, 17),
        1100,
        harvest=dt.datetime(y0 + 1, 3, 15, 12),
        notes="harvested by commercial longline",
    )
    reused = codes.take("A69-9002")
    net.special["reused"] = _animal(
        net,
        rng,
        "NSBS",
        [reused],
        dt.datetime(y0, 4, 20, 10, 5),
        900,
        harvest=dt.datetime(y0, 7, 1, 8),
        notes="tag recovered and re-used",
    )
    _animal(net, rng, "NSBS", [reused], dt.datetime(y0, 8, 22, 14, 17), 900, dated_catalog=True)
    net.special["short"] = _animal(
        net,
        rng,
        "SUBUL",
        [codes.take("A69-1303")],
        dt.datetime(y0, 1, 20, 16),
        180,
        notes="short-life transmitter",
    )
    duplicate = codes.take("A69-1303")
    net.special["duplicate"] = _animal(net, rng, "SUBUL", [duplicate], dt.datetime(y0, 3, 5, 11), 1000)
    _animal(
        net,
        rng,
        "SUBUL",
        [duplicate],
        dt.datetime(y0 + 1, 2, 1, 9),
        1000,
        dated_catalog=True,
        notes="tag code entered for a second animal while the first one is alive",
    )
    net.background_excluded.add(duplicate)
    net.special["bass"] = _animal(
        net, rng, "MDWEA", [codes.take("A69-1601")], dt.datetime(y0 - 1, 5, 2, 7), 1500, sensors=[PRESSURE]
    )

    for array in ("HFX", "SERC1", "MDWEA", "FLKEYS"):
        net.mystery_tags[array] = [codes.take(rng.choice(("A69-1601", "A69-1303"))) for _ in range(4)]


def _array(
    net: Network,
    rng: random.Random,
    serials: _Serials,
    code: str,
    model: str,
    line: list[tuple[float, float]],
    stations: int,
    prefix: str,
    *,
    months: int,
    first: dt.datetime,
    names: list[str] | None = None,
) -> None:
    """Stations along a line, serviced every `months`; receivers move one station on at each trip."""
    (lat0, lon0), (lat1, lon1) = line
    area = net.projects[code].local_area
    places = []
    for i in range(stations):
        f = i / max(stations - 1, 1)
        lat = round(lat0 + (lat1 - lat0) * f + rng.uniform(-0.004, 0.004), 7)
        lon = round(lon0 + (lon1 - lon0) * f + rng.uniform(-0.004, 0.004), 7)
        bottom = float(round(rng.uniform(8, 180) * 2) / 2)
        name = names[i] if names else f"{prefix}{i + 1:03d}"
        places.append((name, lat, lon, bottom))
    pool = [serials.take(model) for _ in range(stations + 1)]
    trip = first
    season = 0
    while trip < net.data_end:
        nxt = _add_months(trip, months)
        recovered = nxt if nxt.date() < net.push_date - dt.timedelta(days=7) else None
        for i, (name, lat, lon, bottom) in enumerate(places):
            deploy = trip + dt.timedelta(days=1, minutes=37 * i)
            recovery = recovered + dt.timedelta(minutes=41 * i) if recovered else None
            drift = round(rng.uniform(-15, 45), 4) if model == "VR2W" and recovery else 0.0
            net.deployments.append(
                Deployment(
                    project=code,
                    station=name,
                    serial=pool[(i + season) % len(pool)],
                    model=model,
                    deploy=deploy,
                    recovery=recovery,
                    latitude=lat,
                    longitude=lon,
                    bottom_depth=bottom,
                    receiver_depth=max(1.0, bottom - rng.choice((0.5, 1.0, 1.5, 2.0, 3.0, 5.0))),
                    drift_seconds=drift,
                    local_area=area,
                )
            )
        if recovered is None:
            break
        trip = nxt
        season += 1


def _add_months(t: dt.datetime, months: int) -> dt.datetime:
    month = t.month - 1 + months
    return t.replace(year=t.year + month // 12, month=month % 12 + 1, day=min(t.day, 28))


def _release_time(rng: random.Random, net: Network) -> dt.datetime:
    start = dt.datetime(net.years[0] - 1, 6, 1)
    span = (dt.datetime(net.years[-1], 7, 1) - start).total_seconds()
    t = start + dt.timedelta(seconds=rng.uniform(0, span))
    return t.replace(second=0, microsecond=0)


def _animal(
    net: Network,
    rng: random.Random,
    code: str,
    tags: list[str],
    released: dt.datetime,
    life_days: int,
    *,
    sensors: list[SensorSpec] | None = None,
    harvest: dt.datetime | None = None,
    notes: str | None = None,
    dated_catalog: bool = False,
) -> list[TagRelease]:
    project = net.projects[code]
    number = 1248800 + len(net.animals) * 7 + rng.randrange(7)
    catalog = f"{code}-{number}" + (f"-{released:%Y-%m-%d}" if dated_catalog else "")
    species = project.species or SPECIES[0]
    net.animals.append(Animal(catalog, code, species[0], species[1]))
    region = REGIONS[net.nodes.index(project.node) % len(REGIONS)]
    locality = rng.choice(region.localities)
    lat = round(rng.uniform(*region.lat), 5)
    lon = round(rng.uniform(*region.lon), 5)
    releases = []
    for i, tag in enumerate(tags):
        sensor = sensors[i] if sensors and i < len(sensors) else None
        rel = TagRelease(
            tagname=tag,
            catalog=catalog,
            project=code,
            kind="animal",
            time=released,
            locality=locality,
            latitude=lat,
            longitude=lon,
            life_days=life_days,
            harvest=harvest,
            date_modified=min(released.date() + dt.timedelta(days=rng.randint(20, 400)), net.push_date),
            notes=notes,
            sensor=sensor,
        )
        net.releases.append(rel)
        releases.append(rel)
    return releases


def _sentinel(
    net: Network, tag: str, code: str, k: int, what: str, since: dt.datetime, at: Deployment
) -> None:
    catalog = f"{code}-SENTINEL-{k:02d}"
    net.animals.append(Animal(catalog, code, None, what))
    net.releases.append(
        TagRelease(
            tagname=tag,
            catalog=catalog,
            project=code,
            kind="sentinel",
            time=since,
            locality=at.station,
            latitude=round(at.latitude, 5),
            longitude=round(at.longitude, 5),
            life_days=3650,
            harvest=None,
            date_modified=since.date(),
            notes=f"{what} moored at {at.station}",
        )
    )


# --- generated projects for large networks ----------------------------------------------------------


def _extra(net: Network, rng: random.Random, codes: _Codes, serials: _Serials) -> None:
    """Projects beyond the core, Zipf-sized: a few huge arrays and trackers, many small ones."""
    count = min(60, 8 + int(net.detections**0.5 / 100))
    people = [
        _person(f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", inst)
        for inst in ("OTN", "DFO", "NOAA", "USGS", "UBC", "FIU", "VIMS", "CDF") * 4
    ]
    people = list(dict.fromkeys(people))
    arrays = [c for c, p in net.projects.items() if p.has_receivers]
    trackers = [c for c, p in net.projects.items() if p.has_tags]
    for i in range(count):
        node = net.nodes[i % len(net.nodes)]
        region = REGIONS[net.nodes.index(node) % len(REGIONS)]
        kind = ("deployment", "tracker", "data", "tracker")[i % 4]
        species = SPECIES[rng.randrange(len(SPECIES))]
        code = f"PROJ{100 + i}"
        what = species[1].title() if kind != "deployment" else region.name
        longname = f"{what} {('Receiver Array', 'Tracking', 'Telemetry Study', 'Movements')[i % 4]} {i + 1}"
        # the first array is the network's giant (about three quarters of all detections, most of them of
        # tags registered nowhere, like the projects with millions of unqualified detections a year in
        # OTN's push reports): its latest unqualified extract is the largest a push makes
        weight = 160.0 if i == 0 else 12.0 / (1 + i // 4) ** 1.2
        pi = rng.choice(people)
        net.projects[code] = Project(
            code=code,
            node=node,
            kind=kind,
            shortname=code,
            longname=longname,
            institution=pi.email.split("@")[1].split(".")[0].upper(),
            citation=f"{pi.name.split(' ', 1)[1]}, {pi.name[0]}. {rng.randint(2008, 2022)}. {longname}",
            local_area=rng.choice(region.localities),
            shares_species=rng.random() < 0.6,
            date_modified=dt.date(net.years[0] - 1, 1 + rng.randrange(12), 1 + rng.randrange(28)),
            pis=[pi],
            pocs=sorted({rng.choice(people), rng.choice(people)}, key=lambda c: c.name),
            weight=weight,
            mystery_share=0.75 if i == 0 else rng.uniform(0.05, 0.6),
            species=species,
        )
        if kind in ("deployment", "data"):
            lat0, lon0 = rng.uniform(*region.lat), rng.uniform(*region.lon)
            line = [(lat0, lon0), (lat0 + rng.uniform(-0.5, 0.5), lon0 + rng.uniform(-0.5, 0.5))]
            stations = max(2, min(25, int(weight * 2)))
            model = rng.choice(("VR2W", "VR2AR", "VR2Tx"))
            first = dt.datetime(net.years[0] - 1, rng.randint(3, 11), rng.randint(1, 28), rng.randint(7, 16))
            _array(net, rng, serials, code, model, line, stations, code[-3:], months=rng.choice((6, 12, 24)),
                   first=first)  # fmt: skip
            net.mystery_tags[code] = [codes.take(rng.choice(("A69-1601", "A69-1303"))) for _ in range(12)]
            if rng.random() < 0.3:
                dep = next(d for d in net.deployments if d.project == code)
                _sentinel(net, codes.take("A180-1702"), code, 1, "reference tag", dep.deploy, dep)
            arrays.append(code)
        if kind in ("tracker", "data"):
            space = rng.choice(("A69-9002", "A69-1601", "A69-1303"))
            for _ in range(4 + int(weight * 6)):
                sensor = rng.choice((None, None, PRESSURE, TEMPERATURE))
                _animal(net, rng, code, [codes.take(space)], _release_time(rng, net), rng.randint(300, 1600),
                        sensors=[sensor] if sensor else None)  # fmt: skip
            trackers.append(code)
    for code in trackers:
        if code in net.ranges:
            continue
        own = [a for a in arrays if net.node_of(a) == net.node_of(code)]
        others = [a for a in arrays if a not in own]
        pick = rng.sample(own, min(len(own), rng.randint(1, 4))) + rng.sample(others, min(len(others), 2))
        net.ranges[code] = pick or arrays[:1]


# --- bursts every network contains ------------------------------------------------------------------


def _scenario(net: Network, rng: random.Random) -> None:
    y0, y1 = net.years[0], net.years[0] + 1
    double = net.special["double"]
    harvested, reused, short, duplicate, bass = (
        net.special[k][0] for k in ("harvested", "reused", "short", "duplicate", "bass")
    )
    sturgeon = next(r for r in net.releases if r.project == "ATSTUR")
    sentinels = [r for r in net.releases if r.kind == "sentinel"]

    def burst(project: str, tag: str, when: dt.datetime, count: int = 12, station: str | None = None) -> None:
        dep = net.deployment_at(project, when, station)
        start = max(when, dep.deploy + dt.timedelta(hours=2))
        start = start.replace(second=rng.randrange(60), microsecond=0)
        net.scenario.append(Burst(dep, tag, start, count, rng.uniform(60, 150)))

    for r in double:  # both tags of the double-tagged shark, on three nodes' receivers
        burst("HFX", r.tagname, dt.datetime(y0, 6, 10, 3))
        burst("SERC1", r.tagname, dt.datetime(y0, 11, 20, 22))
        burst("FLKEYS", r.tagname, dt.datetime(y1, 1, 15, 5))
    burst("SERC1", harvested.tagname, dt.datetime(y1, 2, 20, 13))  # alive: matched
    burst("HFX", harvested.tagname, dt.datetime(y1, 4, 20, 6))  # after its harvest: unqualified
    burst("HFX", reused.tagname, dt.datetime(y0, 6, 5, 1))  # first animal
    burst("HFX", reused.tagname, dt.datetime(y0, 7, 20, 17))  # between the animals: unqualified
    burst("HFX", reused.tagname, dt.datetime(y0, 10, 1, 9))  # second animal
    burst("FLKEYS", short.tagname, dt.datetime(y0, 3, 10, 20))
    burst("FLKEYS", short.tagname, dt.datetime(y1, 2, 10, 4))  # beyond tag life + grace: unqualified
    burst("SERC1", duplicate.tagname, dt.datetime(y0, 6, 15, 2))  # one release: matched
    burst("MDWEA", duplicate.tagname, dt.datetime(y1, 5, 12, 23))  # two releases: ambiguous
    burst("SERC1", sturgeon.tagname, max(sturgeon.time, dt.datetime(y0, 4, 2)) + dt.timedelta(days=30))
    # the receiver that moved from HFX002 to another station hears a striped bass at both stations
    moved = next(d for d in net.deployments if d.project == "HFX" and d.station == "HFX002")
    for dep in sorted((d for d in net.deployments if d.serial == moved.serial), key=lambda d: d.deploy):
        start = max(dep.deploy, net.data_start) + dt.timedelta(days=40)
        if dep.in_water(start) and start < net.data_end and bass.contains(start):
            burst("HFX", bass.tagname, start, station=dep.station)
    for r in sentinels:
        burst(r.project, r.tagname, dt.datetime(y0, 5, 5, 12), 20)
        burst(r.project, r.tagname, dt.datetime(y1, 5, 5, 12), 20)
    for array in ("HFX", "SERC1"):
        burst(array, net.mystery_tags[array][0], dt.datetime(y0, 8, 8, 8))
        burst(array, net.mystery_tags[array][1], dt.datetime(y1, 8, 8, 8))
