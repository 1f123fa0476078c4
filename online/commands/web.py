"""``nudaq web``: serve live monitoring and shifter control in the browser."""

from __future__ import annotations

import argparse

from daq.commands.options import add_system_options, resolve
from daq.processes.common import setup_logging


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "web",
        help="serve the monitoring and control web pages",
        description="Serve the web interface (pages, JSON API under /api, live updates) of "
        "the system using this data directory and database. Reading is open; run control, "
        "alarm acknowledgement, logbook and run quality need the shifter token "
        "($NUDAQ_SHIFTER_TOKEN, else web.shifter_token, else generated into "
        "<data dir>/shifter-token). Binds 127.0.0.1 unless --host says otherwise. Keeps "
        "serving while the database is out (its routes answer 503).",
    )
    add_system_options(p)
    p.add_argument("--host", help="address to bind (default: web.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: web.port, 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from online.web.server import serve

    config, data_dir, db_url = resolve(args, system=True)
    setup_logging("web", data_dir)
    port = config.web.port if args.port is None else args.port
    serve(config, data_dir, db_url, args.host or config.web.host, port)
    return 0
