"""The revisions, one per schema version (Alembic loads every file here but this one)."""
