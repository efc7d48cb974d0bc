"""Schema 3: names compared exactly on MySQL/MariaDB (``studies.name``, ``study_distributions.name``,
``trial_values.metric`` in a binary collation), and ``trial_values.step`` a BIGINT on PostgreSQL and
MySQL/MariaDB; nothing changes on SQLite (its INTEGER is 64-bit, and it compares text exactly).

Their default collations compare text case- and accent-insensitively: study ``'MO'`` was a duplicate of
``'mo'`` (and ``load_study('Mo')`` loaded ``'mo'``), parameter ``'LR'`` got the distribution registered for
``'lr'``, and a metric ``'Loss'`` overwrote ``'loss'`` at the same step. A binary collation only tells apart
names that were equal before, so no stored row can conflict with it.

A step was a 32-bit INTEGER there: a report at a step counting samples or tokens seen (past 2**31) failed
the trial with "integer out of range", where SQLite and the in-memory storage kept it.

MySQL/MariaDB's TEXT keeps 64 KiB: a trial whose attributes (a log, a recipe's record) passed that ended FAIL,
"could not be recorded", and a study's attributes could not be set. Its JSON and error columns become
LONGTEXT there.
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
#: (table, column, NULL or NOT NULL): JSON and error text, LONGTEXT on MySQL/MariaDB.
_TEXTS = (
    ("studies", "user_attrs", "NOT NULL"), ("studies", "system_attrs", "NOT NULL"),
    ("study_distributions", "distribution", "NOT NULL"),
    ("trials", "params", "NOT NULL"), ("trials", "distributions", "NOT NULL"), ("trials", "user_attrs", "NOT NULL"),
    ("trials", "system_attrs", "NOT NULL"), ("trials", "error", "NULL"), ("trials", "objective_values", "NULL"),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # MySQL and MariaDB commit each ALTER at once; MODIFY to the same type is safe to run again.
    if dialect in ("mysql", "mariadb"):
        _alter_each_table_once(
            [(table, f"{column} VARCHAR({length}) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL")
             for table, column, length in _NAMES]
            + [("trial_values", "step BIGINT NOT NULL")]
            + [(table, f"{column} LONGTEXT {null}") for table, column, null in _TEXTS]
        )
    elif dialect == "postgresql":
        op.execute("ALTER TABLE trial_values ALTER COLUMN step TYPE BIGINT")
    set_schema_version(3)


def _alter_each_table_once(changes: list[tuple[str, str]]) -> None:
    """One ``ALTER TABLE ... MODIFY ..., MODIFY ...`` per table: MySQL may copy the table for each."""
    by_table: dict[str, list[str]] = {}
    for table, column in changes:
        by_table.setdefault(table, []).append(f"MODIFY {column}")
    for table, modifies in by_table.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(modifies))


def downgrade() -> None:
    # Back to the table's default collation and 32-bit steps; fails where two names now differ only in case
    # or accents, a step is past 2**31, or a text is past 64 KiB.
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        _alter_each_table_once(
            [(table, f"{column} VARCHAR({length}) NOT NULL") for table, column, length in _NAMES]
            + [("trial_values", "step INTEGER NOT NULL")]
            + [(table, f"{column} TEXT {null}") for table, column, null in _TEXTS]
        )
    elif dialect == "postgresql":
        op.execute("ALTER TABLE trial_values ALTER COLUMN step TYPE INTEGER")
    set_schema_version(2)
