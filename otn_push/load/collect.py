"""From the rows of one extract file to the node-database records it implies, grouped by node.

Nothing is written here: a whole file is parsed and validated first, so a bad value refuses the file
before any database is touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from otn_push.load.reader import ExtractFile, LoadError, RowReader
from shared.extract_list import CODE_RE
from shared.formats import geometry_wkb, parse_contacts, split_project_code
from shared.nodeschema import MATCH_ANIMAL, ROLE_PI, ROLE_POC

_DEPLOY_STAMP = re.compile(r"^\d{4}_\d{2}_\d{2}T\d{2}$")


@dataclass
class ProjectRec:
    code: str
    node: str
    roles: set[str] = field(default_factory=set)
    institution: str | None = None
    citation: str | None = None
    local_area: str | None = None
    shares_species: bool | None = None
    contacts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # role -> [(name, email)]

    @property
    def project_type(self) -> str:
        if self.roles == {"tracker"}:
            return "tracker"
        if self.roles == {"deployment"}:
            return "deployment"
        return "data"


@dataclass
class NodeBatch:
    """Everything one file writes into one node database."""

    projects: dict[str, ProjectRec] = field(default_factory=dict)
    animals: dict[str, list] = field(default_factory=dict)  # catalog -> [project, sci, common, placeholder]
    releases: dict[tuple, tuple] = field(default_factory=dict)
    moorings: dict[str, list] = field(default_factory=dict)
    detections: dict[tuple, tuple] = field(default_factory=dict)
    # qualified detections whose animal is resolved at write time: key -> (tracker node, tracker, tag, time)
    pending_animals: dict[tuple, tuple[str, str, str, dt.datetime]] = field(default_factory=dict)

    def years(self) -> set[int]:
        return {k[2].year for k in self.detections}


@dataclass
class Collected:
    file: str
    kind: str
    rows: int
    nodes: dict[str, NodeBatch]


DETECTION_COLUMNS = (
    "collectioncode", "detection_id", "receiver", "station", "rcvrcatnumber", "latitude", "longitude",
    "the_geom", "bottom_depth", "receiver_depth", "tagname", "codespace", "sensorname", "sensorraw",
    "sensortype", "sensorvalue", "sensorunit", "datecollected", "datecollected_uncorrected",
    "datelastmodified", "relationshiptype", "trackercode", "relatedcatalogitem",
)  # fmt: skip


class Collector:
    def __init__(self, f: ExtractFile, nodes: dict[str, str], default_node: str | None) -> None:
        self.f = f
        self.nodes = nodes
        self.default_node = default_node
        self.r = RowReader(f)
        self.batches: dict[str, NodeBatch] = {}

    def batch(self, node: str) -> NodeBatch:
        return self.batches.setdefault(node, NodeBatch())

    def project(self, field_name: str) -> tuple[str, str]:
        raw = self.r.required(field_name)
        node, code = split_project_code(raw)
        if not CODE_RE.fullmatch(code):
            raise self.r.fail(field_name, f"project code {raw!r} is not letters, digits, - or _")
        node = node or self.default_node
        if node is None:
            raise self.r.fail(field_name, f"project {raw!r} has no node prefix; name the node with --node")
        if node not in self.nodes:
            raise self.r.fail(
                field_name, f"node {node} of {raw!r} is not configured ({', '.join(self.nodes)})"
            )
        return node, code

    def project_rec(self, node: str, code: str) -> ProjectRec:
        return self.batch(node).projects.setdefault(code, ProjectRec(code, node))

    def geometry(self) -> bytes | None:
        value = self.r.text("geometry")
        if value is None:
            return None
        try:
            return geometry_wkb(value)
        except ValueError as exc:
            raise self.r.fail("geometry", f"{value[:60]!r}: {exc}") from None

    def contacts_into(self, rec: ProjectRec) -> None:
        for role, fld in ((ROLE_POC, "contact_poc"), (ROLE_PI, "contact_pi")):
            value = self.r.text(fld)
            if value and role not in rec.contacts:
                rec.contacts[role] = list(dict.fromkeys(parse_contacts(value)))

    def detection_id(self, field_name: str, text: str) -> int:
        tail = text.rsplit("-", 1)[-1]
        if not tail.isdigit():
            raise self.r.fail(field_name, f"{text!r} does not end with a detection number")
        return int(tail)

    def first(self, rec: ProjectRec, attr: str, field_name: str) -> None:
        if getattr(rec, attr) is None:
            setattr(rec, attr, self.r.text(field_name))

    def animal(self, node: str, catalog: str, project: str, placeholder: bool) -> None:
        sci, common = self.r.text("sci"), self.r.text("common")
        known = self.batch(node).animals.get(catalog)
        if known is None:
            self.batch(node).animals[catalog] = [project, sci, common, placeholder]
        else:
            known[1] = known[1] or sci
            known[2] = known[2] or common

    # ------------------------------------------------------------ matched

    def matched_row(self) -> None:
        r = self.r
        tag_node, tag_code = self.project("tag_project")
        catalog = r.required("catalog")
        tagname = r.required("tagname")
        when = r.time("datecollected", required=True)
        assert when is not None
        tag_rec = self.project_rec(tag_node, tag_code)
        tag_rec.roles.add("tracker")
        self.animal(tag_node, catalog, tag_code, False)
        if r.required("receiver").lower() == "release":
            self.first(tag_rec, "citation", "citation")
            self.contacts_into(tag_rec)
            key = (catalog, tagname, when)
            self.batch(tag_node).releases[key] = (
                tagname, catalog, tag_code, "animal", when, r.text("station") or r.text("local_area"),
                r.number_("latitude", -90, 90), r.number_("longitude", -180, 180), self.geometry(),
                None, None, r.date("date_modified"), r.text("notes"),
            )  # fmt: skip
            return
        det_node, det_code = self.project("detected_by")
        det_rec = self.project_rec(det_node, det_code)
        det_rec.roles.add("deployment")
        self.first(det_rec, "citation", "citation")
        self.first(det_rec, "local_area", "local_area")
        self.contacts_into(det_rec)
        detection_id = self.detection_id("unqdetecid", r.required("unqdetecid"))
        receiver = r.required("receiver")
        station = r.text("station")
        lat, lon = r.number_("latitude", -90, 90), r.number_("longitude", -180, 180)
        codespace = r.text("codespace")
        self.synthesized_mooring(det_node, det_code, station, receiver, lat, lon, when)
        self.batch(det_node).detections[(det_code, detection_id, when)] = (
            det_code, detection_id, receiver, station, None, lat, lon, self.geometry(),
            r.number_("bottom_depth"), r.number_("receiver_depth"), tagname, codespace,
            r.text("sensorname"), r.number_("sensorraw"), r.text("sensortype"), r.number_("sensorvalue"),
            r.text("sensorunit"), when, r.time("uncorrected"), r.date("date_modified"), MATCH_ANIMAL,
            tag_code, catalog,
        )  # fmt: skip

    def synthesized_mooring(
        self,
        node: str,
        project: str,
        station: str | None,
        receiver: str,
        lat: float | None,
        lon: float | None,
        when: dt.datetime,
    ) -> None:
        """A deployment per (project, station, receiver, position) spanning its detections; stable id."""
        digest = hashlib.sha1(repr((project, station, receiver, lat, lon)).encode()).hexdigest()[:10]
        mooring_id = f"{station or 'NOSTATION'}-{receiver}-{project}-syn{digest}"
        known = self.batch(node).moorings.get(mooring_id)
        if known is None:
            self.batch(node).moorings[mooring_id] = [
                mooring_id, project, station, receiver, None, when, when, lat, lon,
                self.r.number_("bottom_depth"), self.r.number_("receiver_depth"),
            ]  # fmt: skip
        else:
            known[5] = min(known[5], when)
            known[6] = max(known[6], when)

    # ---------------------------------------------------------- qualified

    def qualified_row(self, sharing: dict[tuple[str, str], bool]) -> None:
        r = self.r
        rcv_node, rcv_code = self.project("receiver_project")
        trk_node, trk_code = self.project("tracker")
        tagname = r.required("tagname")
        when = r.time("datecollected", required=True)
        assert when is not None
        receiver = r.required("receiver")
        station = r.text("station")
        rcv_rec = self.project_rec(rcv_node, rcv_code)
        rcv_rec.roles.add("deployment")
        self.first(rcv_rec, "institution", "institution")
        trk_rec = self.project_rec(trk_node, trk_code)
        trk_rec.roles.add("tracker")
        self.contacts_into(trk_rec)
        if r.is_present("sci"):
            share_key = (trk_node, trk_code)
            sharing[share_key] = sharing.get(share_key, False) or r.text("sci") is not None
        catalog = r.required("catalog")
        if catalog.startswith(tagname + "-") and catalog[len(tagname) + 1 :].isdigit():
            detection_id = int(catalog[len(tagname) + 1 :])
        else:
            detection_id = self.detection_id("catalog", catalog)
        placeholder = f"{trk_code}-{tagname}"
        self.animal(trk_node, placeholder, trk_code, True)
        lat, lon = r.number_("latitude", -90, 90), r.number_("longitude", -180, 180)
        rcvrcat = r.text("rcvrcatnumber")
        if rcvrcat:
            self.catalogued_mooring(rcv_node, rcv_code, rcvrcat, station, receiver, lat, lon, when)
        else:
            self.synthesized_mooring(rcv_node, rcv_code, station, receiver, lat, lon, when)
        codespace = tagname.rsplit("-", 1)[0] if tagname.count("-") >= 2 else None
        key = (rcv_code, detection_id, when)
        batch = self.batch(rcv_node)
        batch.detections[key] = (
            rcv_code, detection_id, receiver, station, rcvrcat, lat, lon, self.geometry(), None, None,
            tagname, codespace, r.text("sensorname"), r.number_("sensorraw"), r.text("sensortype"), None,
            None, when, r.time("uncorrected"), r.date("date_modified"), MATCH_ANIMAL, trk_code, placeholder,
        )  # fmt: skip
        batch.pending_animals[key] = (trk_node, trk_code, tagname, when)

    def catalogued_mooring(
        self,
        node: str,
        project: str,
        mooring_id: str,
        station: str | None,
        receiver: str,
        lat: float | None,
        lon: float | None,
        when: dt.datetime,
    ) -> None:
        """`<station>-<model>-<serial>-<YYYY_MM_DDTHH>`: model is what lies between station and serial."""
        known = self.batch(node).moorings.get(mooring_id)
        if known is not None:
            known[5] = min(known[5], when) if known[12] else known[5]
            return
        head, _, stamp = mooring_id.rpartition("-")
        model = None
        deploy = None
        if _DEPLOY_STAMP.match(stamp):
            deploy = dt.datetime.strptime(stamp, "%Y_%m_%dT%H")
            rest = head
            if rest.endswith("-" + receiver):
                rest = rest[: -len(receiver) - 1]
                if station and rest.startswith(station + "-"):
                    model = rest[len(station) + 1 :] or None
                elif "-" in rest:
                    model = rest.rsplit("-", 1)[1]
        self.batch(node).moorings[mooring_id] = [
            mooring_id, project, station, receiver, model, deploy or when, None, lat, lon, None, None,
            None, deploy is None,
        ]  # fmt: skip


def collect(
    f: ExtractFile,
    nodes: dict[str, str],
    default_node: str | None,
    progress: Callable[[int], None] | None = None,
) -> Collected:
    """Parse and validate every row of the file into per-node batches (raises LoadError, writes nothing)."""
    if default_node is not None and default_node not in nodes:
        raise LoadError(f.name, f"--node {default_node} is not a configured node ({', '.join(nodes)})")
    c = Collector(f, nodes, default_node)
    sharing: dict[tuple[str, str], bool] = {}
    count = 0
    for number, row in f.rows():
        c.r.set(number, row)
        zone = c.r.text("timezone")
        if zone is not None and zone.upper() not in ("UTC", "GMT", "Z"):
            raise c.r.fail("timezone", f"{zone!r}: only UTC times are supported")
        if f.kind == "matched":
            c.matched_row()
        else:
            c.qualified_row(sharing)
        count += 1
        if progress is not None and count % 5000 == 0:
            progress(count)
    for (node, code), shares in sharing.items():
        c.batch(node).projects[code].shares_species = shares
    for batch in c.batches.values():
        for m in batch.moorings.values():
            del m[11:]
    if progress is not None:
        progress(count)
    return Collected(f.name, f.kind, count, c.batches)
