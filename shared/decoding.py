"""Decoding message bodies so that one that is not JSON reaches the handler, which rejects it at once.

FastStream decodes a body labelled application/json itself; a body that is not JSON then fails before
the handler runs, and the failure was retried like a transient one until the delivery limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Undecodable:
    """A body that could not be decoded; `reason` says why."""

    reason: str


async def lenient_decoder(message: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's own decoding; a body it cannot decode becomes an `Undecodable`."""
    try:
        return await original(message)
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        return Undecodable(f"{type(exc).__name__}: {exc}")
