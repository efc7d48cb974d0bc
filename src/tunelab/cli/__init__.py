"""The ``tunelab`` command (Typer). ``main.py`` holds the app and the study commands; each other
module adds the commands of one workflow to it (importing them here registers them)."""

from tunelab.cli import worker as _worker  # noqa: F401, I001  (registers its command; first: the order of --help)
from tunelab.cli import recipe as _recipe  # noqa: F401  (registers its command)
from tunelab.cli import babysit as _babysit  # noqa: F401  (registers its commands)
from tunelab.cli import reevaluate as _reevaluate  # noqa: F401  (registers its command)
from tunelab.cli import storage as _storage  # noqa: F401  (registers its commands)
from tunelab.cli import sweep as _sweep  # noqa: F401  (registers its command)
from tunelab.cli import optuna_import as _optuna_import  # noqa: F401  (registers its command)
from tunelab.cli.main import app

__all__ = ["app"]
