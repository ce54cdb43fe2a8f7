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

    @nodes.command("grants")
    def grants(
        role: str = typer.Option(..., "--role", help="The PostgreSQL account the services use."),
    ) -> None:
        """Print the GRANT statements (a psql script) that give ROLE exactly what the services need."""
        from shared.grants import GrantError, grant_script

        cfg = settings()
        try:
            typer.echo(grant_script(cfg, role), nl=False)
        except GrantError as exc:
            fail(str(exc), 2)

    @nodes.command("check")
    def check(
        timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for each node."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Connect to every node database: reachable, latency, server version; exit 1 if any fails."""
        import json
        from dataclasses import asdict

        from otn_push.cli.status_cmd import nodes_table
        from otn_push.status.nodecheck import check_nodes, node_flags

        cfg = settings()
        checks = run(check_nodes(cfg.nodes, timeout))
        if as_json:
            typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
        else:
            console.print(nodes_table(checks), highlight=False)
        flags = node_flags(checks, cfg.status_max_node_latency)
        raise typer.Exit(1 if any(not c.reachable for c in checks) or flags else 0)
