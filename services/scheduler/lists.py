"""The scheduler's view of the node databases: the home node's extract list and every node's projects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from shared import extract_list
from shared.extract_list import ListActivity, ListRow
from shared.nodes import connection
from shared.settings import Settings


class ListPort(Protocol):
    async def pending_rows(self, push_date: dt.date) -> list[ListRow]: ...

    async def projects(self, unreachable: list[str] | None = None) -> dict[str, str]: ...

    async def mark_completed(self, row_ids: Sequence[int]) -> int: ...

    async def activity(self, push_date: dt.date) -> ListActivity: ...


class NodeLists:
    """ListPort on the real node databases (asyncpg, one short connection per call)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def pending_rows(self, push_date: dt.date) -> list[ListRow]:
        async with connection(self.settings.home_node, self.settings.home_url) as conn:
            return await extract_list.list_rows(conn, push_date, pending_only=True)

    async def projects(self, unreachable: list[str] | None = None) -> dict[str, str]:
        """Projects of every node; unreachable nodes are skipped into `unreachable` when it is given."""
        return await extract_list.known_projects(self.settings.nodes, unreachable)

    async def mark_completed(self, row_ids: Sequence[int]) -> int:
        async with connection(self.settings.home_node, self.settings.home_url) as conn:
            return await extract_list.mark_completed(conn, row_ids)

    async def activity(self, push_date: dt.date) -> ListActivity:
        async with connection(self.settings.home_node, self.settings.home_url) as conn:
            return await extract_list.list_activity(conn, push_date)
