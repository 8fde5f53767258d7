"""Alembic environment of the model registry.

The store runs migrations in code (``RegistryStore`` → ``alembic.command.upgrade``), handing its
own connection, already inside a transaction, through ``config.attributes["connection"]``: the
whole upgrade commits or rolls back as one, and no ``alembic.ini`` is needed. For development
(``alembic revision``), a Config with ``sqlalchemy.url`` set works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from modelserve.repository.registry.schema import Base


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url", ""))
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the registry migrations run online only: they install dialect-specific triggers")
_main()
