"""Running the web server: bind, announce the URL, serve with uvicorn until SIGTERM/Ctrl-C.

If the configured port is taken, the server binds a free port instead and says so, so a
second system on the same machine still gets its monitoring; the URL it announces (stderr,
and with ``announce_json`` one JSON line ``{"url": ...}`` on stdout for ``nudaq up``) is
always the one that works.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
from pathlib import Path

import uvicorn

from daq.core.config import Config
from daq.core.paths import db_url
from daq.processes.common import base_parser, common_setup
from online.web.app import create_app
from online.web.auth import shifter_token
from online.web.database import web_engine

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 2


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or on a free port if that one is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        log.warning("port %d on %s is taken; serving on a free port instead", port, host)
        sock.bind((host, 0))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL a browser on this machine uses for a bound socket."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    config: Config,
    data_dir: Path,
    db_url: str,
    host: str,
    port: int,
    announce_json: bool = False,
) -> None:
    """Serve the web interface of the system in data_dir until stopped (also while its
    database is out: the schema is brought up to date once it answers)."""
    engine = web_engine(db_url, config.web.db_timeout_s)
    token, source = shifter_token(config, data_dir)
    app = create_app(config, data_dir, engine, token)
    sock = bind(host, port)
    url = url_of(sock)
    print(f"nudaq web: {url} (shifter token {source})", file=sys.stderr, flush=True)
    if announce_json:
        print(json.dumps({"url": url}), flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            lifespan="on",
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Main of the web service: prints one JSON line ``{"url": ...}`` on stdout once it
    listens (how ``nudaq up`` learns the address)."""
    parser = base_parser("nudaq web server process")
    parser.add_argument("--host", help="address to bind (default: configuration web.host)")
    parser.add_argument("--port", type=int, help="port (default: configuration web.port)")
    args = parser.parse_args(argv)
    config, data_dir = common_setup(args, "web")
    serve(
        config,
        data_dir,
        db_url(args.db, data_dir),
        args.host or config.web.host,
        config.web.port if args.port is None else args.port,
        announce_json=True,
    )
    return 0
