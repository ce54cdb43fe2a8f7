"""Who gets a project's email: its PIs and points of contact, read from the project's node database.

Contacts are typed in by people and are often stale or malformed: invalid or missing addresses are
skipped with a warning, duplicates are merged, the others still get mail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Protocol

from shared.nodes import connection
from shared.nodeschema import CR, ROLE_PI, ROLE_POC, C, P

ROLE_WORDS = {ROLE_PI: "principal investigator", ROLE_POC: "point of contact"}

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}$")


class UnknownNode(LookupError):
    """The event names a node that is not configured (OTN_PUSH_NODES)."""


@dataclass(frozen=True)
class Contact:
    name: str
    email: str
    role: str


@dataclass(frozen=True)
class ProjectInfo:
    code: str
    node: str
    shortname: str | None = None
    longname: str | None = None
    citation: str | None = None
    institution: str | None = None
    contacts: tuple[Contact, ...] = ()

    @property
    def title(self) -> str:
        return self.longname or self.shortname or self.code


@dataclass
class Recipient:
    name: str
    email: str
    roles: list[str] = field(default_factory=list)


class ContactDirectory(Protocol):
    async def project(self, node: str, code: str) -> ProjectInfo | None:
        """The project's details and PI / point-of-contact entries in role then position order."""
        ...


def valid_address(address: str) -> bool:
    if len(address) > 254 or not _ADDRESS.match(address):
        return False
    try:
        Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        return False
    return True


def choose_recipients(contacts: tuple[Contact, ...] | list[Contact]) -> tuple[list[Recipient], list[str]]:
    """PIs and points of contact with a usable address, de-duplicated; warnings for the rest."""
    chosen: dict[str, Recipient] = {}
    warnings: list[str] = []
    for contact in contacts:
        if contact.role not in (ROLE_PI, ROLE_POC):
            continue
        role = ROLE_WORDS[contact.role]
        address = contact.email.strip()
        if not address:
            warnings.append(f"{role} {contact.name!r} has no email address")
            continue
        if not valid_address(address):
            warnings.append(f"{role} {contact.name!r} has an invalid email address {address!r}: skipped")
            continue
        key = address.lower()
        if key in chosen:
            first = chosen[key]
            # one person in two roles is normal; two contacts (or one role twice) on one address is not
            if role in first.roles or contact.name.strip() != first.name.strip():
                warnings.append(
                    f"{role} {contact.name!r} repeats the address {address!r} of {first.name!r}: "
                    "one email to it"
                )
            if role not in first.roles:
                first.roles.append(role)
            continue
        chosen[key] = Recipient(name=contact.name, email=address, roles=[role])
    return list(chosen.values()), warnings


class NodeDirectory:
    """Reads projects and contacts from the configured node databases (one short connection each)."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes

    async def project(self, node: str, code: str) -> ProjectInfo | None:
        url = self.nodes.get(node.upper())
        if url is None:
            raise UnknownNode(f"node {node!r} is not configured (OTN_PUSH_NODES: {', '.join(self.nodes)})")
        async with connection(node, url) as conn:
            row = await conn.fetchrow(
                f"SELECT {P.shortname}, {P.longname}, {P.citation}, {P.institution} "
                f"FROM {P.table} WHERE {P.code} = $1",
                code,
            )
            if row is None:
                return None
            contacts = await conn.fetch(
                f"""SELECT c.{C.name} AS name, c.{C.email} AS email, cp.{CR.role} AS role
                    FROM {CR.table} cp JOIN {C.table} c ON c.{C.id} = cp.{CR.contact}
                    WHERE cp.{CR.project} = $1 AND cp.{CR.role} = ANY($2::text[])
                    ORDER BY cp.{CR.role} <> $3, cp.{CR.position}, c.{C.id}""",
                code,
                [ROLE_PI, ROLE_POC],
                ROLE_PI,
            )
        return ProjectInfo(
            code=code,
            node=node.upper(),
            shortname=row[P.shortname],
            longname=row[P.longname],
            citation=row[P.citation],
            institution=row[P.institution],
            contacts=tuple(Contact(r["name"], r["email"] or "", r["role"]) for r in contacts),
        )
