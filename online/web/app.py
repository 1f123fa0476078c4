"""The web server of nudaq: live monitoring pages, a JSON API under /api, shifter control.

``create_app`` builds the FastAPI application; the pages are Jinja2 templates with plain
JavaScript and the vendored uPlot library (nothing is fetched from the internet). Reads are
open; run control, alarm acknowledgement, logbook writes and run quality need a shifter
session (online.web.auth). The live status is pushed as server-sent events at
``/api/events`` every ``PUSH_INTERVAL_S``. FastAPI documents the API at /docs.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from daq.core.config import Config
from daq.core.errors import AnalysisError, RunControlError
from daq.core.records import CATEGORY_NAMES
from daq.store.models import Alarm
from daq.store.runs import add_logbook, set_quality
from daq.store.session import session_scope
from online.monitoring.alarms import condition_table
from online.web import queries
from online.web.auth import Auth, ShifterSession, check_origin
from online.web.models import (
    AlarmOut,
    AlarmsOut,
    AnalysisOut,
    CategoryName,
    Condition,
    HistoryOut,
    LogbookEntryOut,
    LogbookIn,
    LoginIn,
    QualityIn,
    Reactor,
    ResidualOut,
    RunControlReply,
    RunOut,
    RunStartIn,
    SessionOut,
    SpectrumOut,
    Status,
)
from online.web.status import POLL_INTERVAL_S, LiveStatus

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PUSH_INTERVAL_S = 1.0
PAGES = {
    "overview": ("/", "Overview"),
    "spectra": ("/spectra", "Spectra"),
    "trends": ("/trends", "Trends"),
    "alarms": ("/alarms", "Alarms"),
    "quality": ("/quality", "Run quality"),
    "logbook": ("/logbook", "Logbook"),
    "control": ("/control", "Run control"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def require_shifter(request: Request) -> ShifterSession:
    """Dependency of every state-changing endpoint: the logged-in shifter (else 401/403)."""
    return request.app.state.auth.require_shifter(request)


Shifter = Annotated[ShifterSession, Depends(require_shifter)]
RunsSpec = Annotated[str | None, Query(description="run numbers such as 3-7,9")]
ExcludeBad = Annotated[bool, Query(description="leave out runs marked bad")]


def create_app(
    config: Config,
    data_dir: Path,
    engine: Engine,
    token: str,
    poll_s: float = POLL_INTERVAL_S,
) -> FastAPI:
    """The application for one system (configuration, data directory, database)."""
    auth = Auth(token)
    live = LiveStatus(config, data_dir, engine, poll_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        live.start()
        try:
            yield
        finally:
            live.stop()

    app = FastAPI(
        title="nudaq",
        summary="Live monitoring and shifter control of the reactor-neutrino DAQ",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.live = live
    app.state.auth = auth
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path != "/docs":
            response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(AnalysisError)
    async def analysis_error(_request: Request, err: AnalysisError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    def read():
        return session_scope(engine, readonly=True)

    # -- pages --------------------------------------------------------------------------------
    def page(name: str):
        def render(request: Request) -> HTMLResponse:
            return templates.TemplateResponse(
                request,
                f"{name}.html",
                {
                    "page": name,
                    "pages": PAGES,
                    "categories": list(CATEGORY_NAMES.values()),
                    "xray_lines": [line.energy_keV for line in config.sim.xray_lines],
                    "window_keV": config.analysis.window_keV,
                },
            )

        return render

    for name, (path, _title) in PAGES.items():
        app.get(path, response_class=HTMLResponse, include_in_schema=False, name=name)(page(name))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="nudaq API",
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    # -- live status --------------------------------------------------------------------------
    @app.get("/api/status", response_model=Status, tags=["monitoring"])
    def status() -> Status:
        """The live overview (refreshed every second from run control and the builder)."""
        return live.latest

    @app.get("/api/events", tags=["monitoring"], response_class=StreamingResponse)
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: a ``status`` event (the /api/status document) every second."""

        async def stream():
            while not await request.is_disconnected():
                yield f"event: status\ndata: {live.latest.model_dump_json()}\n\n"
                await asyncio.sleep(PUSH_INTERVAL_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- spectra and analysis -----------------------------------------------------------------
    @app.get("/api/spectra", response_model=SpectrumOut, tags=["spectra"])
    def spectra(
        reactor: Reactor | None = None,
        category: CategoryName = "all",
        runs: RunsSpec = None,
        exclude_bad: ExcludeBad = False,
        rebin: Annotated[int, Query(ge=1, le=500, description="bins merged")] = 1,
        max_keV: Annotated[float | None, Query(gt=0)] = None,
    ) -> SpectrumOut:
        """A spectrum summed over runs: counts and cpd per bin (both states if no reactor)."""
        with read() as session:
            return queries.spectrum(
                session, config, reactor, category, runs, exclude_bad, rebin, max_keV
            )

    @app.get("/api/residual", response_model=ResidualOut, tags=["spectra"])
    def residual(
        category: CategoryName = "candidate",
        runs: RunsSpec = None,
        exclude_bad: ExcludeBad = False,
        rebin: Annotated[int, Query(ge=1, le=500)] = 5,
        max_keV: Annotated[float, Query(gt=0)] = 100.0,
    ) -> ResidualOut:
        """ON minus OFF (cpd) with the fitted and 90 % CL limit MM spectra."""
        with read() as session:
            return queries.residual(session, config, category, runs, exclude_bad, rebin, max_keV)

    @app.get("/api/analysis", response_model=AnalysisOut, tags=["analysis"])
    def analysis() -> AnalysisOut:
        """The latest live analysis result and the runs it is built from (good or unchecked)."""
        with read() as session:
            return queries.analysis(session)

    @app.get("/api/history", response_model=HistoryOut, tags=["analysis"])
    def history(
        hours: Annotated[float, Query(gt=0, le=24 * 365, description="slow-control span")] = 6.0,
    ) -> HistoryOut:
        """Analysis history (background, sensitivity vs time and exposure), slow control
        of the last ``hours``, and the live rates since the server started."""
        with read() as session:
            return HistoryOut(
                analysis=queries.analysis_history(session),
                slow_control=queries.slow_control(session, hours),
                rates=live.rate_series(),
            )

    # -- alarms -------------------------------------------------------------------------------
    @app.get("/api/alarms", response_model=AlarmsOut, tags=["alarms"])
    def alarms() -> AlarmsOut:
        """Open alarms first, then recent cleared ones; the conditions and thresholds."""
        with read() as session:
            rows = queries.alarms(session)
        return AlarmsOut(
            alarms=rows,
            conditions=[
                Condition(name=n, meaning=m, threshold=t)
                for n, m, t in condition_table(config.alarms)
            ],
        )

    @app.post("/api/alarms/{alarm_id}/ack", response_model=AlarmOut, tags=["alarms"])
    def ack_alarm(alarm_id: int, shifter: Shifter) -> AlarmOut:
        """Acknowledge an alarm (it stays shown until its condition clears)."""
        with session_scope(engine) as session:
            alarm = session.get(Alarm, alarm_id)
            if alarm is None:
                raise HTTPException(404, f"no alarm {alarm_id}")
            if alarm.acked_utc is None:
                alarm.acked_utc = datetime.now(UTC)
                alarm.acked_by = shifter.name
                add_logbook(
                    session,
                    shifter.name,
                    f"alarm acknowledged: {alarm.message}",
                    live.latest.run,
                    automatic=True,
                )
            return AlarmOut.model_validate(alarm, from_attributes=True)

    # -- logbook ------------------------------------------------------------------------------
    @app.get("/api/logbook", response_model=list[LogbookEntryOut], tags=["logbook"])
    def logbook(
        q: Annotated[str, Query(max_length=200, description="text or author contains")] = "",
        run: int | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> list[LogbookEntryOut]:
        """Logbook entries, newest first, optionally searched."""
        with read() as session:
            return queries.logbook(session, q, run, limit)

    @app.post("/api/logbook", response_model=LogbookEntryOut, tags=["logbook"])
    def write_logbook(entry: LogbookIn, shifter: Shifter) -> LogbookEntryOut:
        """Write an entry as the logged-in shifter (default run: the current one)."""
        run_number = entry.run_number if entry.run_number is not None else live.latest.run
        with session_scope(engine) as session:
            row = add_logbook(session, shifter.name, entry.text, run_number)
            return LogbookEntryOut.model_validate(row, from_attributes=True)

    # -- runs ---------------------------------------------------------------------------------
    @app.get("/api/runs", response_model=list[RunOut], tags=["runs"])
    def runs() -> list[RunOut]:
        """Runs, newest first; ``in_analysis`` marks those the live analysis contains."""
        with read() as session:
            return queries.runs(session)

    @app.post("/api/runs/{number}/quality", response_model=RunOut, tags=["runs"])
    def run_quality(number: int, body: QualityIn, shifter: Shifter) -> RunOut:
        """Mark a run good or bad (with a reason); analyses use good runs only by default."""
        with session_scope(engine) as session:
            try:
                set_quality(session, number, body.quality, body.reason)
            except RunControlError as err:
                raise HTTPException(404, str(err)) from None
            add_logbook(
                session,
                shifter.name,
                f"run {number} marked {body.quality}: {body.reason}".rstrip(": "),
                number,
                automatic=True,
            )
        with read() as session:
            return queries.runs(session, number=number)[0]

    # -- run control --------------------------------------------------------------------------
    async def control(command: str, shifter: ShifterSession, **fields) -> JSONResponse:
        if not live.latest.reachable:
            reply = RunControlReply(ok=False, error="run control does not answer")
            return JSONResponse(reply.model_dump(), status_code=503)
        current = live.latest.run
        try:
            answer = await run_in_threadpool(live.command, command, **fields)
        except RunControlError as err:
            log.warning("run control refused %s by %s: %s", command, shifter.name, err)
            reply = RunControlReply(ok=False, error=str(err))
            return JSONResponse(reply.model_dump(), status_code=409)
        reply = RunControlReply(
            ok=True, run=answer.get("run"), summary=answer.get("summary") or None
        )
        number = reply.run if command == "start" else current
        with session_scope(engine) as session:
            add_logbook(session, shifter.name, f"{command} requested from the web", number, True)
        await run_in_threadpool(live.refresh)
        return JSONResponse(reply.model_dump())

    @app.post("/api/run/start", response_model=RunControlReply, tags=["run control"])
    async def run_start(body: RunStartIn, shifter: Shifter) -> JSONResponse:
        """Begin a new run (409 with run control's reason if it refuses)."""
        return await control("start", shifter, comment=body.comment)

    @app.post("/api/run/stop", response_model=RunControlReply, tags=["run control"])
    async def run_stop(shifter: Shifter) -> JSONResponse:
        """End the current run; the reply carries the run summary."""
        return await control("stop", shifter)

    # -- sessions -----------------------------------------------------------------------------
    @app.post("/api/login", response_model=SessionOut, tags=["session"])
    def login(body: LoginIn, request: Request, response: Response) -> SessionOut:
        """Exchange the shifter token for a session (HttpOnly cookie) and a CSRF token."""
        check_origin(request)
        session = auth.login(body.token, body.name, response)
        return SessionOut(logged_in=True, name=session.name, csrf_token=session.csrf)

    @app.post("/api/logout", response_model=SessionOut, tags=["session"])
    def logout(request: Request, response: Response) -> SessionOut:
        """Close this browser's session."""
        check_origin(request)
        auth.logout(request, response)
        return SessionOut(logged_in=False)

    @app.get("/api/session", response_model=SessionOut, tags=["session"])
    def whoami(request: Request) -> SessionOut:
        """Whether this browser has a shifter session, and its CSRF token."""
        session = auth.session(request)
        if session is None:
            return SessionOut(logged_in=False)
        return SessionOut(logged_in=True, name=session.name, csrf_token=session.csrf)

    return app
