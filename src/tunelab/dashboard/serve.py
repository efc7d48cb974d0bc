"""Serving the dashboard from inside a Python process (a notebook, a script that also optimizes).

``tunelab dashboard`` serves it in the foreground; :func:`serve_in_thread` runs the same app with
uvicorn in a background thread of the current process, on a free port of 127.0.0.1 (by default),
and stops it when the ``with`` block ends::

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
    """A TCP port nothing listens on now (at ``host``, an IPv4 or IPv6 address)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(
    storage: str | BaseStorage,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    start_timeout: float = 20.0,
    **app_options: Any,
) -> Iterator[str]:
    """Serve ``create_app(storage, host=host, **app_options)`` on ``host`` in a daemon thread; yield
    its base URL once it answers, and stop it when the block ends.

    Args:
        storage: the studies' storage (a URL or a storage object).
        host: the address to bind (default: 127.0.0.1, only this machine). The app answers requests
            addressed to it and to the loopback names (its Host check, see :func:`create_app`).
        port: the port (default: a free one).
        start_timeout: seconds to wait for the server to answer (RuntimeError past that).
        app_options: ``read_only``, ``token``, ``allowed_hosts`` of :func:`create_app`.
    """
    import uvicorn

    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"serve_in_thread(port=...) must be a TCP port (1-65535) or None, got {port!r}")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"serve_in_thread(host=...) must be an address to bind, e.g. '127.0.0.1', got {host!r}")
    bind = host.strip().strip("[]")
    port = free_port(bind) if port is None else port
    # log_config=None: the server runs inside the user's process, whose logging is theirs. uvicorn's
    # default config goes through logging.config.dictConfig, which removes and closes every handler
    # already installed (a user's file handler; absl's, which then closed the stream it held).
    # Its loggers keep their level and reach the user's handlers through the root logger.
    server = uvicorn.Server(uvicorn.Config(create_app(storage, host=bind, **app_options), host=bind, port=port,
                                           log_level="warning", log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="tunelab-dashboard", daemon=True)
    thread.start()
    # Bound to every interface (0.0.0.0, ::): the URL names the loopback address, which answers too.
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(bind, f"[{bind}]" if ":" in bind else bind)
    base = f"http://{shown}:{port}"
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
