"""Schema 3: names compared exactly on MySQL/MariaDB (``studies.name``, ``study_distributions.name``,
``trial_values.metric`` in a binary collation); nothing changes on SQLite and PostgreSQL.

Their default collations compare text case- and accent-insensitively: study ``'MO'`` was a duplicate of
``'mo'`` (and ``load_study('Mo')`` loaded ``'mo'``), parameter ``'LR'`` got the distribution registered for
``'lr'``, and a metric ``'Loss'`` overwrote ``'loss'`` at the same step. A binary collation only tells apart
names that were equal before, so no stored row can conflict with it.
"""

from __future__ import annotations

from alembic import op

from tunelab.storage.migrations import set_schema_version

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: (table, column, length): the names, each NOT NULL and part of a key.
_NAMES = (("studies", "name", 512), ("study_distributions", "name", 512), ("trial_values", "metric", 256))


def upgrade() -> None:
    # MySQL and MariaDB commit each ALTER at once; MODIFY to the same type is safe to run again.
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        for table, column, length in _NAMES:
            op.execute(
                f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
            )
    set_schema_version(3)


def downgrade() -> None:
    # Back to the table's default collation; fails where two names now differ only in case or accents.
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        for table, column, length in _NAMES:
            op.execute(f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) NOT NULL")
    set_schema_version(2)
