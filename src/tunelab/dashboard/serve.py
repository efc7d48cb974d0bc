"""Serving the dashboard from inside a Python process (a notebook, a script that also optimizes).

``tunelab dashboard`` serves it in the foreground; :func:`serve_in_thread` runs the same app with
uvicorn in a background thread of the current process, on a free port of 127.0.0.1, and stops it
when the ``with`` block ends::

    with tunelab.dashboard.serve_in_thread("sqlite:///tunelab.db") as url:
        print("dashboard at", url)
        study.optimize(objective, n_trials=100)
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunelab.dashboard.app import create_app
from tunelab.errors import ConfigError
from tunelab.storage import BaseStorage


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(
    storage: str | BaseStorage, *, port: int | None = None, start_timeout: float = 20.0, **app_options: Any
) -> Iterator[str]:
    """Serve ``create_app(storage, **app_options)`` on 127.0.0.1 in a daemon thread; yield its base
    URL once it answers, and stop it when the block ends.

    Args:
        storage: the studies' storage (a URL or a storage object).
        port: the port (default: a free one).
        start_timeout: seconds to wait for the server to answer (RuntimeError past that).
        app_options: ``read_only``, ``token``, ``allowed_hosts`` of :func:`create_app`.
    """
    import uvicorn

    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"serve_in_thread(port=...) must be a TCP port (1-65535) or None, got {port!r}")
    port = free_port() if port is None else port
    server = uvicorn.Server(uvicorn.Config(create_app(storage, **app_options), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="tunelab-dashboard", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=2).close()
            break
        except urllib.error.HTTPError:
            break  # it answers (e.g. 401 without the token)
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                server.should_exit = True
                raise RuntimeError(f"the dashboard did not start on {base}") from None
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["free_port", "serve_in_thread"]
