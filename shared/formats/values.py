"""Value conventions shared by the extract writer and the loader: project codes, contacts, geometry."""

from __future__ import annotations

import re

EWKB_POINT_4326 = bytes.fromhex("0101000020E6100000")
WKB_POINT = bytes.fromhex("0101000000")

_CONTACT = re.compile(r"\s*(?P<name>[^()]*?)\s*\((?P<email>[^()]*)\)\s*(?:,|$)")


def split_project_code(code: str) -> tuple[str | None, str]:
    """`OTN.NSBS` -> ("OTN", "NSBS"); `NSBS` -> (None, "NSBS"). Codes are returned upper-case."""
    text = code.strip()
    node, sep, bare = text.rpartition(".")
    if not sep:
        return None, text.upper()
    return node.upper() or None, bare.upper()


def parse_contacts(text: str) -> list[tuple[str, str]]:
    """`Name (email), Name (email)` -> [(name, email), …] in order; a name without `(email)` has email ''."""
    text = text.strip()
    if not text:
        return []
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _CONTACT.match(text, pos)
        if match is None or match.end() == pos:
            # names without addresses: the rest is comma separated
            found.extend((n.strip(), "") for n in text[pos:].split(",") if n.strip())
            break
        found.append((match["name"], match["email"].strip()))
        pos = match.end()
    return found


def format_contacts(contacts: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} ({email})" if email else name for name, email in contacts)


def geometry_wkb(text: str) -> bytes:
    """Hex EWKB (SRID 4326) or plain WKB point -> the 21-byte plain little-endian WKB point."""
    raw = bytes.fromhex(text.strip())
    if len(raw) == 25 and raw[:9] == EWKB_POINT_4326:
        return WKB_POINT + raw[9:]
    if len(raw) == 21 and raw[:5] == WKB_POINT:
        return raw
    raise ValueError("not a hex WKB/EWKB point in SRID 4326")
