"""The web server as a nudaq process: ``python -m online.web --config F --data-dir D --db URL``.

``nudaq up`` starts it; it prints one JSON line ``{"url": ...}`` on stdout once it listens.
"""

from __future__ import annotations

from daq.config import default_db_url
from daq.process import base_parser, common_setup

from .server import serve


def main() -> None:
    parser = base_parser("nudaq web server process")
    parser.add_argument("--host", help="address to bind (default: configuration web.host)")
    parser.add_argument("--port", type=int, help="port (default: configuration web.port)")
    args = parser.parse_args()
    config, data_dir = common_setup(args, "web")
    serve(
        config,
        data_dir,
        args.db or default_db_url(data_dir),
        args.host or config.web.host,
        config.web.port if args.port is None else args.port,
        announce_json=True,
    )


if __name__ == "__main__":
    main()
