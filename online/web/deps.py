"""FastAPI dependencies that hand routes the system of their own app (``request.app.state``).

Nothing here holds a system at module level, so several apps in one process (the tests build
one per test) stay independent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from daq.core.config import Config
from online.web.auth import Auth, ShifterSession
from online.web.status import LiveStatus


def get_config(request: Request) -> Config:
    """The configuration of the system this app serves."""
    return request.app.state.config


def get_engine(request: Request) -> Engine:
    """The database engine of the system."""
    return request.app.state.engine


def get_live(request: Request) -> LiveStatus:
    """The live status poller (run control, builder snapshots, open alarms)."""
    return request.app.state.live


def get_auth(request: Request) -> Auth:
    """The shifter token and open sessions of this app."""
    return request.app.state.auth


def get_templates(request: Request) -> Jinja2Templates:
    """The Jinja2 templates of the pages."""
    return request.app.state.templates


def require_shifter(request: Request) -> ShifterSession:
    """Dependency of every state-changing endpoint: the logged-in shifter (else 401/403)."""
    return request.app.state.auth.require_shifter(request)


ConfigDep = Annotated[Config, Depends(get_config)]
EngineDep = Annotated[Engine, Depends(get_engine)]
LiveDep = Annotated[LiveStatus, Depends(get_live)]
AuthDep = Annotated[Auth, Depends(get_auth)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
Shifter = Annotated[ShifterSession, Depends(require_shifter)]
