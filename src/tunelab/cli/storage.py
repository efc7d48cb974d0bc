"""``tunelab storage``: the schema version of a storage's database, and upgrading it.

Opening a database an older tunelab wrote upgrades it anyway (with a warning); ``tunelab storage
upgrade`` does it on purpose, e.g. once before starting many workers, and says what it did.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from tunelab.cli.main import DEFAULT_STORAGE, StorageOption, _cli_errors, _out, _shown, app
from tunelab.storage import SCHEMA_VERSION, schema_version, upgrade

storage_app = typer.Typer(
    name="storage",
    help="The schema version of a storage's database, and upgrading it to this tunelab's.",
    no_args_is_help=True,
)
app.add_typer(storage_app, name="storage")


def _state(version: int) -> str:
    if version == SCHEMA_VERSION:
        return "up to date"
    if version < SCHEMA_VERSION:
        return "older: `tunelab storage upgrade` upgrades it, as opening it with this tunelab does"
    return "written by a newer tunelab: upgrade tunelab (pip install -U tunelab) to use it"


@storage_app.command("version")
def version_command(storage: StorageOption = DEFAULT_STORAGE) -> None:
    """The schema version of the database (changing nothing) and this tunelab's."""
    with _cli_errors():
        version = schema_version(storage)
    _out().print(Text(
        f"{_shown(storage)}: schema {version}; this tunelab writes schema {SCHEMA_VERSION} ({_state(version)})"
    ))


@storage_app.command("upgrade")
def upgrade_command(
    storage: StorageOption = DEFAULT_STORAGE,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be upgraded, and change nothing.")
    ] = False,
) -> None:
    """Upgrade the database to this tunelab's schema, in place (studies and trials are kept)."""
    shown = _shown(storage)
    with _cli_errors():
        if dry_run:
            version = schema_version(storage)
            if version < SCHEMA_VERSION:
                message = f"would upgrade the tunelab database at {shown} from schema {version} to {SCHEMA_VERSION}"
            else:
                message = f"{shown}: schema {version}, {_state(version)}: nothing to upgrade"
        else:
            before, after = upgrade(storage)
            if before == after:
                message = f"the tunelab database at {shown} is up to date (schema {after}): nothing to upgrade"
            else:
                message = f"upgraded the tunelab database at {shown} from schema {before} to {after}"
    _out().print(Text(message))
