"""Alembic's environment for tunelab's schema: run by :mod:`tunelab.storage.sql_migrate`, not by hand.

tunelab passes the connection to migrate in ``config.attributes["connection"]``, inside its own
transaction and holding its migration lock; Alembic neither opens nor commits anything here.
"""

from __future__ import annotations

from alembic import context

from tunelab.storage.sql_schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "tunelab's migrations run through tunelab: tunelab.storage.upgrade(url) or "
        "`tunelab storage upgrade --storage URL`"
    )
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
