"""Schema 2: ``trials.objective_values``, a JSON list of a multi-objective trial's values (NULL otherwise)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tunelab.storage.migrations import set_schema_version

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MySQL and MariaDB commit each ALTER at once: an upgrade interrupted after it left the
    # column behind with the version still 1, and the next attempt must not fail on it.
    if "objective_values" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("trials")}:
        op.add_column("trials", sa.Column("objective_values", sa.Text, nullable=True))
    set_schema_version(2)


def downgrade() -> None:
    # In place (SQLite 3.35 or later): a batch copy of the table would drop the old one, and with it,
    # through ON DELETE CASCADE, every trial's curves.
    op.drop_column("trials", "objective_values")
    set_schema_version(1)
