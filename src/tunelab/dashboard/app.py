"""The dashboard app: the JSON API, the static front end, and its guards (token, read-only, origin).

``create_app(storage)`` builds a FastAPI app; ``tunelab dashboard --storage URL`` serves it with uvicorn.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

import tunelab
from tunelab.dashboard.api import Settings, router
from tunelab.errors import ConfigError, StudyNotFoundError, TrialNotFoundError, TrialStateError
from tunelab.storage import BaseStorage, get_storage

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_JS = "plotly.min.js"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def plotly_js_path() -> Path | None:
    """plotly.js as the installed plotly package ships it (no CDN), or None without plotly."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    return path if path.is_file() else None


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


def create_app(
    storage: str | BaseStorage,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The dashboard of the studies in ``storage`` (a URL or a storage object).

    Args:
        storage: where the studies are; a URL is opened (and closed when the app stops), a storage
            object is used as it is. The app keeps no study state: other processes may write.
        read_only: refuse the actions (stop, enqueue, note) with 403.
        token: when set, every /api request needs ``Authorization: Bearer TOKEN`` (or
            ``?token=TOKEN``), else 401.
        allowed_hosts: the Host names requests may carry (e.g. ``["127.0.0.1", "localhost"]``
            against DNS rebinding); default: any.
    """
    if token is not None and not token:
        raise ConfigError("token must be a non-empty string (or None for no token)")
    owned = isinstance(storage, str)
    store = get_storage(storage, create=False) if isinstance(storage, str) else storage
    static = _static_files()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            store.close()

    app = FastAPI(
        title="tunelab dashboard", version=tunelab.__version__, lifespan=lifespan,
        description="Studies, trials, curves, figures and analysis of a tunelab storage, and a few actions "
                    "(stop a running trial, enqueue a configuration, annotate a trial).",
    )
    app.state.tunelab = Settings(storage=store, read_only=read_only, token=token)
    app.include_router(router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
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
        return response

    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

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
