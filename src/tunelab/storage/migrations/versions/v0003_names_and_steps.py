"""Schema 3: names compared exactly on MySQL/MariaDB (``studies.name``, ``study_distributions.name``,
``trial_values.metric`` in a binary collation), and ``trial_values.step`` a BIGINT on PostgreSQL and
MySQL/MariaDB; nothing changes on SQLite (its INTEGER is 64-bit, and it compares text exactly).

Their default collations compare text case- and accent-insensitively: study ``'MO'`` was a duplicate of
``'mo'`` (and ``load_study('Mo')`` loaded ``'mo'``), parameter ``'LR'`` got the distribution registered for
``'lr'``, and a metric ``'Loss'`` overwrote ``'loss'`` at the same step. A binary collation only tells apart
names that were equal before, so no stored row can conflict with it.

A step was a 32-bit INTEGER there: a report at a step counting samples or tokens seen (past 2**31) failed
the trial with "integer out of range", where SQLite and the in-memory storage kept it.
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
    dialect = op.get_bind().dialect.name
    # MySQL and MariaDB commit each ALTER at once; MODIFY to the same type is safe to run again.
    if dialect in ("mysql", "mariadb"):
        for table, column, length in _NAMES:
            op.execute(
                f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
            )
        op.execute("ALTER TABLE trial_values MODIFY step BIGINT NOT NULL")
    elif dialect == "postgresql":
        op.execute("ALTER TABLE trial_values ALTER COLUMN step TYPE BIGINT")
    set_schema_version(3)


def downgrade() -> None:
    # Back to the table's default collation and 32-bit steps; fails where two names now differ only in case
    # or accents, or a step is past 2**31.
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        for table, column, length in _NAMES:
            op.execute(f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) NOT NULL")
        op.execute("ALTER TABLE trial_values MODIFY step INTEGER NOT NULL")
    elif dialect == "postgresql":
        op.execute("ALTER TABLE trial_values ALTER COLUMN step TYPE INTEGER")
    set_schema_version(2)
