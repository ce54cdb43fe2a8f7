"""`otn-push nodes init|check`: the OTN-style schema in every configured node database."""

from __future__ import annotations

import typer

from otn_push.cli.common import console, fail, run, settings
from shared.nodes import NodeUnavailable, connection, ensure_database, init_schema


def register(app: typer.Typer) -> None:
    nodes = typer.Typer(help="Node databases: create the OTN-style schema, check connections.")
    app.add_typer(nodes, name="nodes")

    @nodes.command("init")
    def init(
        create_databases: bool = typer.Option(True, help="Create a node database that does not exist yet."),
    ) -> None:
        """Create (idempotently) the OTN-style schema in every configured node database."""
        cfg = settings()

        async def go() -> None:
            for node, url in cfg.nodes.items():
                if create_databases:
                    await ensure_database(node, url)
                async with connection(node, url) as conn:
                    await init_schema(conn)
                console.print(f"node {node}: schema ready")

        try:
            run(go())
        except NodeUnavailable as exc:
            fail(str(exc))
