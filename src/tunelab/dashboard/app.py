"""The dashboard app: the JSON API, the static front end, and its guards (Host, token, read-only, origin).

``create_app(storage)`` builds a FastAPI app; ``tunelab dashboard --storage URL`` serves it with uvicorn.
"""

from __future__ import annotations

import hmac
import importlib
import ipaddress
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

import tunelab
from tunelab.dashboard.api import ENCODED_SLASH, SLASHES_KEY, Settings, router
from tunelab.dashboard.models import MAX_INT64
from tunelab.errors import ConfigError, StudyNotFoundError, TrialNotFoundError, TrialStateError
from tunelab.storage import BaseStorage, get_storage

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_JS = "plotly.min.js"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page runs only its own scripts: stored text that ever reached its markup unescaped could not run an
inline handler (``onerror=...``) or script. plotly.js needs inline styles, and eval for its WebGL traces."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The Host names a dashboard accepts by default (with any port), besides the address it is bound to."""
ANY_HOST = "*"
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::", "[::]"})

logger = logging.getLogger("tunelab")


def plotly_js_path() -> Path | None:
    """plotly.js as the installed plotly package ships it (no CDN), or None without plotly."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    return path if path.is_file() else None


SHARED_OPTIONALS = ("pandas",)
"""Modules a request may import half-way while another request's plotly figure looks them up: plotly takes
``sys.modules["pandas"]`` as it is (``get_module(should_load=False)``), and a pandas still being imported by
the importance route (scikit-learn imports it) has no ``Series`` yet: that figure was a 500."""


def import_shared_optionals() -> None:
    """Import :data:`SHARED_OPTIONALS` that are installed, once, before the app serves requests."""
    for name in SHARED_OPTIONALS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _static_files() -> dict[str, Path]:
    """The files GET /static/{name} may serve: fixed when the app starts, from the folder's listing.

    Nothing from a request reaches the file system: a name not in this mapping is a 404.
    """
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else {}
    plotly_js = plotly_js_path()
    if plotly_js is not None:
        files[PLOTLY_JS] = plotly_js
    return files


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        given = request.query_params.get("token", "")
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _same_origin(request: Request) -> bool:
    """False when a browser sent this request from another site (a form posted cross-site)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _host_name(value: str) -> str:
    """A Host header's or an allowed entry's name, without its port, lower-case; IPv6 in brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    if value.count(":") > 1:  # a bare IPv6 address: no port can follow it
        return f"[{value}]"
    return value.partition(":")[0]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def default_allowed_hosts(host: str | None = None) -> list[str]:
    """The Host names accepted when ``allowed_hosts`` is not given: :data:`LOOPBACK_HOSTS` and ``host``,
    the address the app is bound to (e.g. 127.0.0.2, or a LAN address; not 0.0.0.0 / ::, which name no
    host)."""
    names = list(LOOPBACK_HOSTS)
    if host is not None and host.strip().lower() not in _UNSPECIFIED:
        name = _host_name(host)
        if name not in names:
            names.append(name)
    return names


class HostCheck:
    """Whether a request's Host header names this dashboard (against DNS rebinding: a web page of
    evil.example that resolves its name to 127.0.0.1 sends ``Host: evil.example``).

    Entries are names or addresses (any port), ``*.example.com`` for its subdomains, or ``*`` for any.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        if isinstance(allowed, str):
            raise ConfigError(f"allowed_hosts must be a list of host names, not one string: [{allowed!r}]")
        names = [_host_name(str(a)) for a in allowed if str(a).strip()]
        self.any = ANY_HOST in names
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def __call__(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        name = _host_name(header)
        return name in self.exact or (not _is_ip(name) and name.endswith(self.suffixes) if self.suffixes else False)


def _nonfinite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as the text JSON would need ("NaN", "Infinity", "-Infinity")."""
    if _nonfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A request's validation errors as JSON: one clear error where a value is NaN or infinite (a union
    such as a parameter's value gives one error per member otherwise, each with the member's name at the
    end of its ``loc``, and NaN cannot be written back as JSON), and a bound of 2**63 - 1 named as the
    storages' limit."""
    bad = [tuple(e.get("loc", ())) for e in errors if _nonfinite(e.get("input"))]
    out: list[dict[str, Any]] = []
    said: set[tuple[Any, ...]] = set()
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if _nonfinite(error.get("input")):
            if len(loc) > 1 and sum(b[:-1] == loc[:-1] for b in bad) > 1:
                loc = loc[:-1]  # one error per member of a union: name the value, not the member
            if loc not in said:
                said.add(loc)
                shown = _json_safe(error["input"])
                out.append({"type": "finite_number", "loc": list(loc), "input": shown,
                            "msg": f"{shown} is not valid here: JSON has no NaN or Infinity and tunelab stores "
                                   "none; send a finite number (or what the field expects)"})
            continue
        item = {k: v for k, v in error.items() if k in ("type", "loc", "msg", "input", "ctx")}
        ctx = error.get("ctx")
        if error.get("type") == "less_than_equal" and isinstance(ctx, Mapping) and ctx.get("le") == MAX_INT64:
            item["msg"] = f"must be at most 2**63 - 1 = {MAX_INT64}: trial numbers and steps are 64-bit integers"
        out.append(_json_safe(jsonable_encoder(item)))
    return out


class EncodedSlashes:
    """Routes a path whose segment holds an encoded slash (``/api/studies/exp%2Flr/trials``, study ``exp/lr``)
    by that segment: the server decodes ``%2F`` before routing, and ``{name}`` matches one segment only.

    The slash reads as :data:`~tunelab.dashboard.api.ENCODED_SLASH` while the request is routed; the API's
    routes turn it back in the path parameters they match (a request whose path already holds that
    character is left as it is, as is any path outside /api)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if isinstance(raw, bytes) and b"%2f" in raw.lower():
            segments = [unquote_to_bytes(s).decode("utf-8", "replace") for s in raw.split(b"/")]
            if not any(ENCODED_SLASH in s for s in segments):
                routed = "/".join(s.replace("/", ENCODED_SLASH) for s in segments)
                path, root = scope.get("path", ""), scope.get("root_path", "")
                decoded = routed.replace(ENCODED_SLASH, "/")
                prefix = root if root and path == root + decoded else "" if path == decoded else None
                if prefix is not None and decoded.startswith("/api/"):
                    scope = {**scope, "path": prefix + routed, SLASHES_KEY: True}
        await self.app(scope, receive, send)


async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """422 with :func:`validation_errors` (FastAPI's own answer is a 500 when the request held a NaN)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)


def create_app(
    storage: str | BaseStorage,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    host: str | None = None,
) -> FastAPI:
    """The dashboard of the studies in ``storage`` (a URL or a storage object).

    Args:
        storage: where the studies are; a URL is opened (and closed when the app stops), a storage
            object is used as it is. The app keeps no study state: other processes may write.
        read_only: refuse the actions (stop, enqueue, note) with 403.
        token: when set, every /api request needs ``Authorization: Bearer TOKEN`` (or
            ``?token=TOKEN``), else 401.
        allowed_hosts: the Host names requests may carry, any port (against DNS rebinding: a request
            with another Host gets 400). Names, addresses (``"192.168.1.5"``, ``"[::1]"``),
            ``"*.example.com"``, or ``"*"`` for any Host (which lets any web page the browser opens
            read the dashboard through DNS rebinding: use a token). Default:
            :func:`default_allowed_hosts`: localhost, 127.0.0.1, [::1] and ``host``.
        host: the address the app is served on (what :func:`serve_in_thread` and ``tunelab dashboard``
            bind), accepted as a Host by default. Bound to every interface (``0.0.0.0``, ``::``)
            without ``allowed_hosts``, it answers only requests addressed to the loopback names, and
            a warning says to list the names clients use.
    """
    if token is not None and not token:
        raise ConfigError("token must be a non-empty string (or None for no token)")
    if host is not None and not isinstance(host, str):
        raise ConfigError(f"host must be the address the app is bound to (a string) or None, got {host!r}")
    check = HostCheck(default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts)
    if check.any:
        logger.warning("the dashboard accepts any Host header (allowed_hosts=['*']): a web page opened in a "
                       "browser that can reach it may read it (DNS rebinding); use a token")
    elif allowed_hosts is None and host is not None and host.strip().lower() in _UNSPECIFIED:
        logger.warning("the dashboard is bound to %s but accepts only requests addressed to %s: list the names "
                       "or addresses that clients use (allowed_hosts=[...], tunelab dashboard --allowed-host "
                       "NAME), or '*' for any", host or "every interface", ", ".join(LOOPBACK_HOSTS))
    owned = isinstance(storage, str)
    store = get_storage(storage, create=False) if isinstance(storage, str) else storage
    static = _static_files()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import_shared_optionals()
        yield
        if owned:
            store.close()

    app = FastAPI(
        title="tunelab dashboard", version=tunelab.__version__, lifespan=lifespan,
        description="Studies, trials, curves, figures and analysis of a tunelab storage, and a few actions "
                    "(stop a running trial, enqueue a configuration, annotate a trial).",
    )
    app.state.tunelab = Settings(storage=store, read_only=read_only, token=token)
    api_pages = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    app.include_router(router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not check(request.headers.get("host")):
            return JSONResponse({"detail": "invalid Host header: this dashboard does not answer to that name "
                                           "(see allowed_hosts, tunelab dashboard --allowed-host)"}, status_code=400)
        if request.method in _UNSAFE_METHODS and not _same_origin(request):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        path = request.url.path
        if token is not None and (path == "/api" or path.startswith("/api/")) and not _authorized(request, token):
            return JSONResponse({"detail": "a valid token is needed: Authorization: Bearer TOKEN"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the page's URL may carry ?token=
        response.headers["X-Frame-Options"] = "DENY"
        if path not in api_pages:  # /docs and /redoc load their scripts from a CDN, with an inline one
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    app.add_middleware(EncodedSlashes)  # outermost: the guard and the routes see the routed path
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StudyNotFoundError, not_found)
    app.add_exception_handler(TrialNotFoundError, not_found)
    app.add_exception_handler(ConfigError, bad_request)
    app.add_exception_handler(TrialStateError, conflict)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        if "index.html" not in static:
            raise HTTPException(404, "the dashboard's page is missing from this installation")
        return FileResponse(static["index.html"], media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> FileResponse:
        path = static.get(name)
        if path is None:
            raise HTTPException(404, f"no static file {name!r}")
        cache = "max-age=86400" if name == PLOTLY_JS else "no-cache"
        return FileResponse(path, headers={"Cache-Control": cache})

    return app
