"""The least privilege otn-push's services need in PostgreSQL, as GRANTs (README "Database accounts").

On every node database: read the node tables (and make the extractor's per-session temp tables). On the
home node: also set the completion columns of the extract list, nothing else of it. In the own database
(OTN_PUSH_DATABASE_URL, default the home node's): a schema `otn_push` owned by the account, where the
services create and migrate their own tables. Adding list rows (`otn-push list add`), loading files and
creating node schemas are administrators' work and need more than this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.db import OWN_SCHEMA
from shared.nodes import database_name
from shared.nodeschema import CR, SCHEMA, A, C, D, L, M, P, R
from shared.redact import redact_url
from shared.settings import Settings

ROLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
READ_TABLES = (P.table, C.table, CR.table, A.table, R.table, M.table, D.table, L.table)


class GrantError(ValueError):
    """The role name cannot be used in GRANT statements."""


@dataclass
class DatabaseGrants:
    """The statements to run, as a superuser or the owner, in one database."""

    url: str
    roles: list[str] = field(default_factory=list)  # what this database is to otn-push, e.g. "node OTN"
    statements: list[str] = field(default_factory=list)

    @property
    def database(self) -> str:
        return database_name(self.url)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_role(role: str) -> str:
    if not ROLE_RE.fullmatch(role):
        raise GrantError(
            f"--role {role!r}: use a plain PostgreSQL name (a-z, 0-9, _; not starting with a digit)"
        )
    return role


def _where(url: str) -> tuple[str, int | None, str]:
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port, database_name(url))


def _connect(url: str) -> str:
    """psql's `\\connect` to the URL's database on its own server (`-` keeps the administrator's user): a
    script covering nodes on several servers would otherwise run every section on the first one."""
    host, port, database = _where(url)
    if not host:
        return f"\\connect {_ident(database)}"
    return f"\\connect {_ident(database)} - {host} {port or 5432}"


def grant_plan(settings: Settings, role: str) -> list[DatabaseGrants]:
    """Per database (nodes in order, then the own database if separate): the GRANTs `role` needs."""
    role = _ident(check_role(role))
    by_place: dict[tuple[str, int | None, str], DatabaseGrants] = {}

    def place(url: str, what: str) -> DatabaseGrants:
        grants = by_place.setdefault(_where(url), DatabaseGrants(url))
        grants.roles.append(what)
        return grants

    for node, url in settings.nodes.items():
        grants = place(url, f"node {node}" + (" (home)" if node == settings.home_node else ""))
        grants.statements += [
            f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database_name(url))} TO {role};",
            f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role};",
            f"GRANT SELECT ON {', '.join(READ_TABLES)} TO {role};",
        ]
        if node == settings.home_node:
            grants.statements.append(
                f"GRANT UPDATE ({L.completed}, {L.completed_at}) ON {L.table} TO {role};"
            )
    own = place(settings.own_database_url, "otn-push's own tables")
    connect = f"GRANT CONNECT ON DATABASE {_ident(own.database)} TO {role};"
    if not any(
        s.startswith(f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(own.database)} ") for s in own.statements
    ):
        own.statements.append(connect)
    own.statements += [
        f"CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA} AUTHORIZATION {role};",
        # an administrator may have made the schema and its tables already (`otn-push db upgrade`, the
        # demo): the account must own them, or the services cannot migrate them
        f"ALTER SCHEMA {OWN_SCHEMA} OWNER TO {role};",
        "DO $$ DECLARE t regclass; BEGIN FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON "
        f"n.oid = c.relnamespace WHERE n.nspname = '{OWN_SCHEMA}' AND c.relkind IN ('r', 'p') LOOP "
        f"EXECUTE 'ALTER TABLE ' || t || ' OWNER TO {role}'; END LOOP; END $$;",
    ]
    return list(by_place.values())


def grant_script(settings: Settings, role: str) -> str:
    """A psql script: one `\\connect` section per database, naming its server (run as an administrator)."""
    lines = [
        f"-- otn-push least privilege for role {role}",
        f"-- create the role first: CREATE ROLE {role} LOGIN PASSWORD '...';",
        f"-- detection partitions are read through {D.table}: no grant per partition is needed",
    ]
    for grants in grant_plan(settings, role):
        lines += [
            "",
            f"-- {', '.join(grants.roles)}: {redact_url(grants.url)}",
            _connect(grants.url),
            *grants.statements,
        ]
    return "\n".join(lines) + "\n"
