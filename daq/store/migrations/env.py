"""Alembic environment of nudaq: runs the migrations on the connection handed over by
daq.store.session (``alembic_config(connection)``), inside the caller's transaction."""

from alembic import context

from daq.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "nudaq migrations run on a connection: use daq.store.session.upgrade_database "
        "or alembic_config(connection)"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
