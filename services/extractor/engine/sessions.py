"""Node connections kept open between the extracts of one extractor process.

A new connection costs PostgreSQL a backend start and a cold catalog cache, and its lookup temp tables are
created and dropped with it: for a small extract that was more than half of its build, and CPU that the
other extractor and PostgreSQL needed. One idle connection per node URL is kept; a build takes it and gives
it back when it ends cleanly (a build that failed closes its connections: one may be mid-COPY).
"""

from __future__ import annotations

import asyncio

import asyncpg

from shared.nodes import NodeUnavailable, connect


class NodeSessions:
    def __init__(self) -> None:
        self._idle: dict[str, asyncpg.Connection] = {}

    async def open(self, name: str, url: str, setup: str) -> asyncpg.Connection:
        """A connection to `url` with `setup` run on it: the idle one if it still works, else a new one."""
        conn = self._idle.pop(url, None)
        if conn is not None:
            try:
                await conn.execute(setup)
                return conn
            except Exception:  # it died while idle (server restart, killed backend): a new one
                conn.terminate()
        conn = await connect(name, url)
        try:
            await conn.execute(setup)
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, OSError | asyncpg.PostgresConnectionError):
                raise NodeUnavailable(name, url, exc) from None
            raise
        return conn

    async def give_back(self, url: str, conn: asyncpg.Connection) -> None:
        """Keep `conn` for the next build, unless one is kept already or it is not idle."""
        if conn.is_closed():
            return
        if url in self._idle or conn.is_in_transaction():
            await conn.close()
            return
        self._idle[url] = conn

    async def close(self) -> None:
        idle, self._idle = list(self._idle.values()), {}
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)
