"""Servers that tests start in threads: a real run control without DAQ processes, and local
SMTP and HTTP servers that record what they receive (the alarm notifications)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from daq.control.runcontrol import RunControl
from daq.core.config import Config


@contextmanager
def serving_run_control(engine, data_dir, delay_s: float = 0.0):
    """A real run control with no DAQ processes, answering requests in a thread after
    delay_s (as at a cold start, busy starting the processes and the run)."""
    config = Config()
    rc = RunControl(config, data_dir, engine)
    rc.participants = ()
    stop = threading.Event()

    def serve():
        stop.wait(delay_s)
        while not stop.is_set():
            rc.pump(20)
            rc.serve_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield rc
    finally:
        stop.set()
        thread.join(5)
        rc.close()


def wait_for(predicate, timeout_s: float = 10.0, what: str = "a condition"):
    """Poll predicate until it returns something true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


class WebhookServer:
    """A local HTTP server that records every request (method, path, headers, body) and
    answers with the status codes of ``answers`` in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": body,
                    }
                )
                self.send_response(owner.answers.pop(0) if owner.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/nudaq"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        """The JSON bodies received so far."""
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    """A local SMTP server (aiosmtpd) that records every message and login."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[dict] = []
        self.logins: list[tuple[str, str]] = []
        owner = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd)
                owner.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "message": email.message_from_bytes(
                            envelope.content, policy=email.policy.default
                        ),
                    }
                )
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            owner.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=True)

        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
