"""Checks of a storage URL before it is opened, so that a typo gets the fix rather than a driver's error.

``sqllite:///x.db`` used to end in "Can't load plugin: sqlalchemy.dialects:sqllite. Install the database
driver, e.g. pip install 'tunelab[postgres]'", and ``sqlite:/bc.db`` in "write 'sqlite:///sqlite:/bc.db'".
:func:`check_storage_url` says what was meant instead. It depends on nothing of the CLI (only SQLAlchemy and
:mod:`tunelab.errors`), so that :func:`tunelab.storage.get_storage` can call it too.
"""

from __future__ import annotations

import difflib
import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from tunelab.errors import StorageError

BACKENDS = {
    "sqlite": "sqlite:///FILE (nothing to install)",
    "postgresql": "postgresql+psycopg://USER@HOST/DB (pip install 'tunelab[postgres]')",
    "mysql": "mysql+pymysql://USER@HOST/DB (pip install 'tunelab[mysql]')",
    "mariadb": "mariadb+pymysql://USER@HOST/DB (pip install 'tunelab[mysql]')",
}
"""The databases tunelab is tested on, with the URL form and the extra each needs."""
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
"""The driver of each that tunelab's extras install."""
EXTRAS = {"postgresql": "pip install 'tunelab[postgres]'", "mysql": "pip install 'tunelab[mysql]'",
          "mariadb": "pip install 'tunelab[mysql]'"}
_SCHEME_ONLY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?P<slashes>/{0,2})(?P<rest>.*)$", re.S)


def check_storage_url(url: str) -> None:
    """Raise :class:`~tunelab.errors.StorageError` with the fix when ``url`` is a storage URL with a typo:
    a misspelt database (``sqllite://``, ``postgres://``), too few slashes (``sqlite:/x.db``,
    ``sqlite://x.db``), or a driver that is not installed, or an empty string. Anything else passes (opening it
    may still fail)."""
    if not url.strip():
        raise StorageError(f"storage {url!r} is empty; give a URL such as 'sqlite:///tunelab.db'")
    if "://" not in url:
        _check_slashes(url)
        return
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # not parseable: the storage says so
    if parsed.password is not None:  # the messages below show the URL, never its password (as SQLStorage's)
        url = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name() if "+" in parsed.drivername else None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StorageError(f"cannot open storage {url!r}: {_unknown(url, backend, driver)}") from None
    if backend == "sqlite" and parsed.host:
        raise StorageError(
            f"cannot open storage {url!r}: an SQLite URL has three slashes before the file's path: "
            f"'sqlite:///{parsed.host}{'/' + parsed.database if parsed.database else ''}' (four for an absolute path)"
        )
    if backend == "sqlite" and (parsed.username or parsed.password is not None or parsed.port):
        raise StorageError(
            f"cannot open storage {url!r}: an SQLite URL names a file, with no user, password or port: "
            f"'sqlite:///{parsed.database or 'FILE'}' (four slashes for an absolute path)"
        )
    if backend == "sqlite":
        return
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise StorageError(f"cannot open storage {url!r}: {_missing_driver(url, backend, driver, e)}") from None


def _check_slashes(url: str) -> None:
    """``sqlite:/x.db``, ``postgresql:host/db``: a database's name and a colon, but not ``://``."""
    m = _SCHEME_ONLY.match(url)
    if m is None or len(m.group("scheme")) < 2:  # no scheme, or a Windows drive (C:\\x.db)
        return
    scheme, rest = m.group("scheme"), m.group("rest").lstrip("/")
    backend = scheme.partition("+")[0].lower()
    known = backend if backend in BACKENDS else _close(backend)
    if known == "sqlite":
        raise StorageError(
            f"storage {url!r} is not a URL: an SQLite URL is sqlite:/// followed by the file's path: "
            f"'sqlite:///{rest}' for {rest} in the current directory, 'sqlite:////{rest}' for /{rest}"
        )
    if known is not None:
        raise StorageError(f"storage {url!r} is not a URL: write '{_scheme_for(known, scheme)}://{rest}' "
                           f"({EXTRAS[known]})")


def _unknown(url: str, backend: str, driver: str | None) -> str:
    if backend in BACKENDS and driver is not None:
        return (f"SQLAlchemy has no driver {driver!r} for {backend}; tunelab's extras install "
                f"{backend}+{DRIVERS.get(backend, driver)}: {BACKENDS[backend]}")
    rest = url.partition("://")[2]
    if backend == "postgres":  # the name SQLAlchemy dropped in 1.4
        return (f"SQLAlchemy no longer reads postgres://; write 'postgresql+psycopg://{rest}' "
                f"({EXTRAS['postgresql']})")
    close = _close(backend)
    if close is not None:
        return f"no database is called {backend!r}; did you mean '{_scheme_for(close, close)}://{rest}'?"
    return (f"no database is called {backend!r} (no SQLAlchemy dialect of that name is installed); tunelab works "
            "with " + ", ".join(BACKENDS.values()))


def _missing_driver(url: str, backend: str, driver: str | None, error: ImportError) -> str:
    missing = error.name or str(error)
    wanted = DRIVERS.get(backend)
    if wanted is not None and driver != wanted:
        rest = url.partition("://")[2]
        return (f"its driver ({missing}) is not installed; use the one tunelab installs: "
                f"'{backend}+{wanted}://{rest}' ({EXTRAS[backend]})")
    if backend in BACKENDS:
        return f"its driver ({missing}) is not installed: {BACKENDS[backend]}"
    return f"its driver ({missing}) is not installed: pip install it"


def _close(name: str) -> str | None:
    found = difflib.get_close_matches(name.lower(), [*BACKENDS, "postgres"], n=1, cutoff=0.6)
    if not found:
        return None
    return "postgresql" if found[0] == "postgres" else found[0]


def _scheme_for(backend: str, given: str) -> str:
    """The scheme to write for ``backend``: sqlite as it is, the others with the driver tunelab installs."""
    if backend == "sqlite":
        return "sqlite"
    return f"{backend}+{DRIVERS[backend]}" if "+" not in given or given.partition("+")[0] != backend else given


__all__ = ["BACKENDS", "DRIVERS", "EXTRAS", "check_storage_url"]
