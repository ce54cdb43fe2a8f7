"""Alembic environment: always run with a connection handed in by `shared.migrations`."""

from __future__ import annotations

from alembic import context

from shared.db import OWN_SCHEMA, Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shared.migrations.upgrade(url) or `otn-push db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table_schema=OWN_SCHEMA,
    include_schemas=True,
    include_name=lambda name, type_, parent: type_ != "schema" or name == OWN_SCHEMA,
)
with context.begin_transaction():
    context.run_migrations()
