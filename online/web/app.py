"""The web server of nudaq: live monitoring pages, a JSON API under /api, shifter control.

``create_app`` builds the FastAPI application for one system and includes the routes of
online.web.routes, which find the system through ``app.state`` (online.web.deps). The pages
are Jinja2 templates with plain JavaScript and the vendored uPlot library (nothing is fetched
from the internet). Reads are open; run control, alarm acknowledgement, logbook writes and run
quality need a shifter session (online.web.auth). The live status is pushed as server-sent
events at ``/api/events``. FastAPI documents the API at /docs. A database outage makes the
routes that use it answer 503 and nothing else (online.web.database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from daq.core.config import Config
from daq.core.errors import AnalysisError
from online.web.auth import Auth
from online.web.database import OUTAGE_ERRORS, database_unavailable
from online.web.routes import alarms, control, logbook, monitoring, pages, runs, session, spectra
from online.web.status import POLL_INTERVAL_S, LiveStatus

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
ROUTERS = (pages, monitoring, spectra, alarms, logbook, runs, control, session)
"""The route modules, in the order their routes are matched."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Poll the live status while the server runs."""
    app.state.live.start()
    try:
        yield
    finally:
        app.state.live.stop()


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Add ``SECURITY_HEADERS`` to every response but the /docs page (Swagger UI)."""
    response = await call_next(request)
    if request.url.path != "/docs":
        response.headers.update(SECURITY_HEADERS)
    return response


async def analysis_error(_request: Request, err: AnalysisError) -> JSONResponse:
    """A request the analysis cannot answer (such as unknown runs) is a 400."""
    return JSONResponse({"detail": str(err)}, status_code=400)


def create_app(
    config: Config,
    data_dir: Path,
    engine: Engine,
    token: str,
    poll_s: float = POLL_INTERVAL_S,
) -> FastAPI:
    """The application for one system (configuration, data directory, database)."""
    app = FastAPI(
        title="nudaq",
        summary="Live monitoring and shifter control of the reactor-neutrino DAQ",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.config = config
    app.state.engine = engine
    app.state.live = LiveStatus(config, data_dir, engine, poll_s)
    app.state.auth = Auth(token)
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(security_headers)
    app.exception_handler(AnalysisError)(analysis_error)
    for error in OUTAGE_ERRORS:
        app.exception_handler(error)(database_unavailable)
    for module in ROUTERS:
        app.include_router(module.router)
    return app
