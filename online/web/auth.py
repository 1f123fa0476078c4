"""Shifter authentication and cross-site request forgery (CSRF) protection.

Monitoring is open; every state-changing request (run control, alarm acknowledgement,
logbook writes, run quality) needs a shifter session:

1. ``POST /api/login`` with the shifter token (``$NUDAQ_SHIFTER_TOKEN``, else the
   configuration's ``web.shifter_token``; if both are empty a random token is generated
   once and kept in ``<data dir>/shifter-token``, readable by its owner only) opens a
   session kept in server memory for ``SESSION_TTL_S``.
2. The session id travels in the ``nudaq_session`` cookie: HttpOnly (scripts cannot read
   it) and SameSite=Strict (a browser never sends it with a request started by another
   site).
3. Each session has its own CSRF token, returned by the login and readable by the page in
   the ``nudaq_csrf`` cookie; a state-changing request must echo it in the ``X-CSRF-Token``
   header. A request whose ``Origin`` header names another host is refused as well.

Without a valid session the API answers 401, with a wrong CSRF token or origin 403, and in
both cases changes nothing.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response

from daq.core.config import SHIFTER_TOKEN_ENV, SHIFTER_TOKEN_KEY_ENV, Config

log = logging.getLogger(__name__)

TOKEN_FILE = "shifter-token"
SESSION_COOKIE = "nudaq_session"
CSRF_COOKIE = "nudaq_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 12 * 3600.0
"""A session lasts one long shift."""


def shifter_token(config: Config, data_dir: Path) -> tuple[str, str]:
    """The shifter token and where it comes from, for the line that tells the shifter:
    the environment variable, the configuration key (also when ``nudaq up`` handed it over
    in the environment, SHIFTER_TOKEN_KEY_ENV), or the file it was read from or generated
    into. Never the token itself."""
    if token := os.environ.get(SHIFTER_TOKEN_ENV):
        if key := os.environ.get(SHIFTER_TOKEN_KEY_ENV):
            return token, f"from the configuration key {key}"
        return token, f"from the environment variable {SHIFTER_TOKEN_ENV}"
    if config.web.shifter_token:
        return config.web.shifter_token, "from the configuration key web.shifter_token"
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), f"in {path}"
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("no shifter token configured: generated one in %s", path)
    return token, f"generated in {path}"


@dataclass
class ShifterSession:
    """A logged-in shifter."""

    name: str
    csrf: str
    expires: float


class Auth:
    """The shifter token and the open sessions of one web server."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._sessions: dict[str, ShifterSession] = {}

    def login(self, token: str, name: str, response: Response) -> ShifterSession:
        """Open a session if the token is right (401 otherwise) and set its cookies."""
        if not hmac.compare_digest(token.encode(), self._token):
            log.warning("refused login of %r: wrong token", name)
            raise HTTPException(401, "wrong shifter token")
        now = time.monotonic()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
        sid = secrets.token_urlsafe(32)
        session = ShifterSession(name, secrets.token_urlsafe(32), now + SESSION_TTL_S)
        self._sessions[sid] = session
        max_age = int(SESSION_TTL_S)
        response.set_cookie(
            SESSION_COOKIE, sid, max_age=max_age, httponly=True, samesite="strict", path="/"
        )
        response.set_cookie(CSRF_COOKIE, session.csrf, max_age=max_age, samesite="strict", path="/")
        log.info("shifter %s logged in", name)
        return session

    def logout(self, request: Request, response: Response) -> None:
        """Close the session of this request (if any) and clear its cookies."""
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")

    def session(self, request: Request) -> ShifterSession | None:
        """The live session of this request, or None."""
        session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def require_shifter(self, request: Request) -> ShifterSession:
        """FastAPI dependency of every state-changing endpoint: 401 or 403, else the shifter."""
        session = self.session(request)
        if session is None:
            raise HTTPException(401, "shifter login required")
        check_origin(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        return session


def check_origin(request: Request) -> None:
    """403 if the request's Origin header names a host other than the one it was sent to."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, f"cross-origin request from {origin} refused")
