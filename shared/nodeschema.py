"""The OTN-style node database: every table and column name otn-push uses, in one place.

The real OTN DDL is not public. This is our own OTN-style schema, created only for the demo, tests and
loading; a real node maps its own names here. Project codes are stored WITHOUT the node prefix
(`NSBS`, not `OTN.NSBS`): `otn_resources.node` gives the prefix, and codes are unique network-wide.

Semantics that the extract engine and the loader both rely on:
- detections carry the receiver-side values as placed by the matching step (station, receiver serial,
  position, depths, exact point geometry, the deployment id `rcvrcatnumber`) and the match result
  (`relationshiptype`, `trackercode`, `relatedcatalogitem`);
- `the_geom`/`release_geom` hold the plain little-endian WKB point (21 bytes); the published lat/lon may
  be rounded, the geometry keeps the full-precision point;
- empty text is stored as NULL, never as ''.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "obis"


@dataclass(frozen=True)
class Projects:
    table: str = f"{SCHEMA}.otn_resources"
    code: str = "collectioncode"
    node: str = "node"
    project_type: str = "ois_project_type"  # tracker | deployment | data
    shortname: str = "shortname"
    longname: str = "longname"
    institution: str = "institutioncode"
    citation: str = "citation"
    local_area: str = "local_area"
    shares_species: str = "share_species_with_array_owners"
    date_modified: str = "datelastmodified"


@dataclass(frozen=True)
class Contacts:
    table: str = f"{SCHEMA}.contacts"
    id: str = "contact_id"
    name: str = "name"
    email: str = "email"


@dataclass(frozen=True)
class ContactRoles:
    table: str = f"{SCHEMA}.contacts_projects"
    project: str = "collectioncode"
    contact: str = "contact_id"
    role: str = "role"  # principalInvestigator | pointOfContact | researcher | technician
    position: str = "position"  # stable order of names in `Name (email), Name (email)`


ROLE_PI = "principalInvestigator"
ROLE_POC = "pointOfContact"


@dataclass(frozen=True)
class Animals:
    table: str = f"{SCHEMA}.otn_animals"
    catalog: str = "catalognumber"
    project: str = "collectioncode"
    scientific_name: str = "scientificname"
    common_name: str = "commonname"
    placeholder: str = "is_placeholder"  # known only from a qualified extract: catalog is synthetic


@dataclass(frozen=True)
class Releases:
    """One row per tag per release; a double-tagged animal has one row per tag."""

    table: str = f"{SCHEMA}.otn_tag_releases"
    tagname: str = "tagname"
    catalog: str = "catalognumber"
    project: str = "collectioncode"
    tag_kind: str = "tag_kind"  # animal | sentinel (test / transceiver tags)
    release_time: str = "utc_release_date_time"
    locality: str = "release_locality"
    latitude: str = "release_latitude"
    longitude: str = "release_longitude"
    geom: str = "release_geom"
    est_tag_life_days: str = "est_tag_life_days"
    harvest_date: str = "harvest_date"
    date_modified: str = "datelastmodified"
    notes: str = "notes"


@dataclass(frozen=True)
class Moorings:
    """Receiver deployments; `catalog` is the deployment id `<station>-<model>-<serial>-<YYYY_MM_DDTHH>`."""

    table: str = f"{SCHEMA}.moorings"
    catalog: str = "catalognumber"
    project: str = "collectioncode"
    station: str = "station_name"
    receiver: str = "rcvrserial"
    model: str = "rcvrmodel"
    deploy_date: str = "deploy_date"
    recovery_date: str = "recovery_date"
    latitude: str = "stn_lat"
    longitude: str = "stn_long"
    bottom_depth: str = "bottom_depth"
    receiver_depth: str = "rcvr_depth"


@dataclass(frozen=True)
class Detections:
    """Partitioned by calendar year of `datecollected` (partitions `otn_detections_YYYY`)."""

    table: str = f"{SCHEMA}.otn_detections"
    partition_prefix: str = f"{SCHEMA}.otn_detections_"
    project: str = "collectioncode"  # receiver (array) project
    detection_id: str = "detection_id"
    receiver: str = "receiver"
    station: str = "station"
    rcvrcatnumber: str = "rcvrcatnumber"
    latitude: str = "latitude"
    longitude: str = "longitude"
    geom: str = "the_geom"
    bottom_depth: str = "bottom_depth"
    receiver_depth: str = "receiver_depth"
    tagname: str = "tagname"
    codespace: str = "codespace"
    sensorname: str = "sensorname"
    sensorraw: str = "sensorraw"
    sensortype: str = "sensortype"
    sensorvalue: str = "sensorvalue"
    sensorunit: str = "sensorunit"
    datecollected: str = "datecollected"
    datecollected_uncorrected: str = "datecollected_uncorrected"
    date_modified: str = "datelastmodified"
    relationship: str = "relationshiptype"  # animal | unqualified | sentinel
    tracker: str = "trackercode"  # tag project of the matched animal or sentinel tag
    animal: str = "relatedcatalogitem"


MATCH_ANIMAL = "animal"
MATCH_UNQUALIFIED = "unqualified"
MATCH_SENTINEL = "sentinel"


@dataclass(frozen=True)
class ExtractList:
    table: str = f"{SCHEMA}.detection_extracts_list"
    id: str = "id"
    detection_extract: str = "detection_extract"
    git_issue_link: str = "git_issue_link"
    push_date: str = "push_date"
    completed: str = "completed"
    completed_at: str = "completed_date"
    date_added: str = "date_added"


P, C, CR, A, R, M, D, L = (
    Projects(),
    Contacts(),
    ContactRoles(),
    Animals(),
    Releases(),
    Moorings(),
    Detections(),
    ExtractList(),
)


def ddl() -> list[str]:
    """Idempotent DDL for one node database (detection partitions are made by `partition_ddl`)."""
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"""CREATE TABLE IF NOT EXISTS {P.table} (
            {P.code} text PRIMARY KEY,
            {P.node} text NOT NULL,
            {P.project_type} text NOT NULL DEFAULT 'data'
                CHECK ({P.project_type} IN ('tracker', 'deployment', 'data')),
            {P.shortname} text,
            {P.longname} text,
            {P.institution} text,
            {P.citation} text,
            {P.local_area} text,
            {P.shares_species} boolean NOT NULL DEFAULT true,
            {P.date_modified} date
        )""",
        f"""CREATE TABLE IF NOT EXISTS {C.table} (
            {C.id} bigserial PRIMARY KEY,
            {C.name} text NOT NULL,
            {C.email} text NOT NULL DEFAULT '',
            UNIQUE ({C.name}, {C.email})
        )""",
        f"""CREATE TABLE IF NOT EXISTS {CR.table} (
            {CR.project} text NOT NULL REFERENCES {P.table} ({P.code}) ON DELETE CASCADE,
            {CR.contact} bigint NOT NULL REFERENCES {C.table} ({C.id}),
            {CR.role} text NOT NULL,
            {CR.position} integer NOT NULL,
            PRIMARY KEY ({CR.project}, {CR.role}, {CR.contact})
        )""",
        f"""CREATE TABLE IF NOT EXISTS {A.table} (
            {A.catalog} text PRIMARY KEY,
            {A.project} text NOT NULL REFERENCES {P.table} ({P.code}),
            {A.scientific_name} text,
            {A.common_name} text,
            {A.placeholder} boolean NOT NULL DEFAULT false
        )""",
        f"CREATE INDEX IF NOT EXISTS otn_animals_project_idx ON {A.table} ({A.project})",
        f"""CREATE TABLE IF NOT EXISTS {R.table} (
            {R.tagname} text NOT NULL,
            {R.catalog} text NOT NULL REFERENCES {A.table} ({A.catalog}),
            {R.project} text NOT NULL REFERENCES {P.table} ({P.code}),
            {R.tag_kind} text NOT NULL DEFAULT 'animal' CHECK ({R.tag_kind} IN ('animal', 'sentinel')),
            {R.release_time} timestamp NOT NULL,
            {R.locality} text,
            {R.latitude} double precision,
            {R.longitude} double precision,
            {R.geom} bytea,
            {R.est_tag_life_days} integer,
            {R.harvest_date} timestamp,
            {R.date_modified} date,
            {R.notes} text,
            PRIMARY KEY ({R.catalog}, {R.tagname}, {R.release_time})
        )""",
        f"CREATE INDEX IF NOT EXISTS otn_tag_releases_project_idx ON {R.table} ({R.project})",
        f"CREATE INDEX IF NOT EXISTS otn_tag_releases_tag_idx ON {R.table} ({R.tagname})",
        f"""CREATE TABLE IF NOT EXISTS {M.table} (
            {M.catalog} text PRIMARY KEY,
            {M.project} text NOT NULL REFERENCES {P.table} ({P.code}),
            {M.station} text,
            {M.receiver} text NOT NULL,
            {M.model} text,
            {M.deploy_date} timestamp NOT NULL,
            {M.recovery_date} timestamp,
            {M.latitude} double precision,
            {M.longitude} double precision,
            {M.bottom_depth} double precision,
            {M.receiver_depth} double precision
        )""",
        f"CREATE INDEX IF NOT EXISTS moorings_receiver_idx ON {M.table} ({M.receiver}, {M.deploy_date})",
        f"""CREATE TABLE IF NOT EXISTS {D.table} (
            {D.project} text NOT NULL,
            {D.detection_id} bigint NOT NULL,
            {D.receiver} text NOT NULL,
            {D.station} text,
            {D.rcvrcatnumber} text,
            {D.latitude} double precision,
            {D.longitude} double precision,
            {D.geom} bytea,
            {D.bottom_depth} double precision,
            {D.receiver_depth} double precision,
            {D.tagname} text NOT NULL,
            {D.codespace} text,
            {D.sensorname} text,
            {D.sensorraw} double precision,
            {D.sensortype} text,
            {D.sensorvalue} double precision,
            {D.sensorunit} text,
            {D.datecollected} timestamp NOT NULL,
            {D.datecollected_uncorrected} timestamp,
            {D.date_modified} date,
            {D.relationship} text NOT NULL DEFAULT 'unqualified'
                CHECK ({D.relationship} IN ('animal', 'unqualified', 'sentinel')),
            {D.tracker} text,
            {D.animal} text,
            PRIMARY KEY ({D.project}, {D.detection_id}, {D.datecollected})
        ) PARTITION BY RANGE ({D.datecollected})""",
        # matched extracts: a tag project's animals, by time
        f"""CREATE INDEX IF NOT EXISTS otn_detections_tracker_idx
            ON {D.table} ({D.tracker}, {D.relationship}, {D.datecollected})""",
        # qualified / unqualified / sentinel extracts: an array project's receivers, by kind
        f"""CREATE INDEX IF NOT EXISTS otn_detections_array_idx
            ON {D.table} ({D.project}, {D.relationship}, {D.datecollected})""",
        f"""CREATE TABLE IF NOT EXISTS {L.table} (
            {L.id} bigserial PRIMARY KEY,
            {L.detection_extract} text NOT NULL,
            {L.git_issue_link} text,
            {L.push_date} date,
            {L.completed} boolean NOT NULL DEFAULT false,
            {L.completed_at} timestamptz,
            {L.date_added} timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX IF NOT EXISTS detection_extracts_list_push_idx ON {L.table} ({L.push_date})",
    ]


def partition_name(year: int) -> str:
    return f"{D.partition_prefix}{year:04d}"


def partition_ddl(year: int) -> str:
    """Idempotent DDL for the detections partition of one calendar year."""
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(year)} PARTITION OF {D.table} "
        f"FOR VALUES FROM ('{year:04d}-01-01') TO ('{year + 1:04d}-01-01')"
    )
