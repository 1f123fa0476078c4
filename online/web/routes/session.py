"""Shifter sessions: login with the shifter token, logout, and the session of this browser."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from online.web.auth import check_origin
from online.web.deps import AuthDep
from online.web.models import LoginIn, SessionOut

router = APIRouter()


@router.post("/api/login", response_model=SessionOut, tags=["session"])
def login(body: LoginIn, request: Request, response: Response, auth: AuthDep) -> SessionOut:
    """Exchange the shifter token for a session (HttpOnly cookie) and a CSRF token."""
    check_origin(request)
    session = auth.login(body.token, body.name, response)
    return SessionOut(logged_in=True, name=session.name, csrf_token=session.csrf)


@router.post("/api/logout", response_model=SessionOut, tags=["session"])
def logout(request: Request, response: Response, auth: AuthDep) -> SessionOut:
    """Close this browser's session."""
    check_origin(request)
    auth.logout(request, response)
    return SessionOut(logged_in=False)


@router.get("/api/session", response_model=SessionOut, tags=["session"])
def whoami(request: Request, auth: AuthDep) -> SessionOut:
    """Whether this browser has a shifter session, and its CSRF token."""
    session = auth.session(request)
    if session is None:
        return SessionOut(logged_in=False)
    return SessionOut(logged_in=True, name=session.name, csrf_token=session.csrf)
