"""Alembic's migrations of tunelab's SQL schema, shipped inside the package.

tunelab runs them itself (:mod:`tunelab.storage.sql_migrate`): opening a database written by
an older tunelab upgrades it, and ``tunelab storage upgrade`` does it on demand. No
``alembic.ini`` is needed: the configuration is built in code and ``env.py`` migrates the
connection tunelab hands it, inside tunelab's transaction and lock.

Each revision in ``versions/`` is one schema version: revision ``"0001"`` is schema 1 (the
first release's tables, the baseline), ``"0002"`` schema 2, and so on. A revision spells out
its own DDL (never the current tables of ``sql_schema.py``, which move on) and records its
schema version in ``tunelab_meta`` (:func:`set_schema_version`), where older releases look.
To change the schema: add ``versions/vNNNN_what.py`` with ``revision = "NNNN"`` and
``down_revision`` the previous one, change ``sql_schema.py`` to match, and raise
``SCHEMA_VERSION`` to NNNN.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_meta = sa.table("tunelab_meta", sa.column("key", sa.String), sa.column("value", sa.Text))


def set_schema_version(version: int) -> None:
    """Record ``version`` as the database's schema version in ``tunelab_meta`` (inside a revision)."""
    op.execute(_meta.delete().where(_meta.c.key == "schema_version"))
    op.execute(_meta.insert().values(key="schema_version", value=str(version)))
