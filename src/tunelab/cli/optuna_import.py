"""``tunelab import-optuna STUDY --from URL``: copy an Optuna study's finished trials into a tunelab study."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from tunelab.cli.main import DEFAULT_STORAGE, StorageOption, StudyArgument, _cli_errors, _out, _shown, app
from tunelab.errors import ConfigError


@app.command("import-optuna")
def import_optuna(
    study_name: StudyArgument,
    source: Annotated[str, typer.Option(
        "--from", metavar="URL", show_default=False,
        help="The Optuna storage holding the study, e.g. sqlite:///optuna.db (or a JournalStorage file).")],
    storage: StorageOption = DEFAULT_STORAGE,
    name: Annotated[str | None, typer.Option(
        "--name", help="The new tunelab study's name (default: the Optuna study's).", show_default=False)] = None,
    metric: Annotated[str | None, typer.Option(
        "--metric", show_default=False,
        help="The curve that holds Optuna's intermediate values (default: the objective's name, else 'value').",
    )] = None,
) -> None:
    """Copy an Optuna study's finished trials (params, values, intermediate values, attributes) into a new
    tunelab study; learn from it with warm_start=[name]."""
    if metric is not None and not metric.strip():
        raise typer.BadParameter("give the curve's name, e.g. --metric val_loss (or leave --metric out)",
                                 param_hint="--metric")
    with _cli_errors():
        try:
            import optuna
        except ImportError:
            raise ConfigError("import-optuna reads the study with Optuna itself: pip install optuna") from None
        from tunelab.integrations.optuna import import_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opened = _optuna_storage(optuna, source)
        try:
            old = optuna.load_study(study_name=study_name, storage=opened)
        except KeyError:
            known = [s.study_name for s in optuna.get_all_study_summaries(opened)]
            raise ConfigError(f"no Optuna study {study_name!r} in {_shown(source)}; it holds: "
                              f"{', '.join(map(repr, known)) or 'no study'}") from None
        new = import_study(old, storage=storage, name=name, metric=metric)
        copied = len(new.trials)
    _out().print(f"copied {copied} of {len(old.trials)} trials of Optuna study {study_name!r} into {new.name!r} "
                 f"({_shown(storage)}); learn from it with warm_start=[{new.name!r}]", markup=False, highlight=False)


def _optuna_storage(optuna: Any, url: str) -> Any:
    """Optuna's storage at ``url``: an RDB URL, or a journal file (``.log`` / ``.jsonl``), refused with the fix."""
    if "://" not in url:
        if not os.path.exists(url):
            raise ConfigError(f"--from {url!r}: no such file; give an Optuna storage URL such as "
                              "sqlite:///optuna.db, or the path of a JournalStorage file")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
        raise ConfigError(f"--from {url!r}: no such file (Optuna would create an empty database there)")
    try:
        return optuna.storages.RDBStorage(url, skip_table_creation=True)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors alike: one line with the URL
        raise ConfigError(f"--from {_shown(url)}: Optuna could not open it: {str(e).splitlines()[0]}") from None
