"""Options and resolution shared by the subcommands that talk to a system or a database.

Before a command sends a request to run control it checks that something listens at run
control's endpoint (``require_system``): connecting a plain socket to it answers within
``PROBE_TIMEOUT_S`` whether a system is up, where a ZeroMQ request to nobody would only time
out (after 90 s for ``run stop``). The probe speaks no ZeroMQ; run control drops the
connection like any peer that leaves.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from daq.core.config import Config, load_config
from daq.core.errors import RunControlError
from daq.core.paths import data_dir as resolve_data_dir
from daq.core.paths import db_url, require_data_dir

PROBE_TIMEOUT_S = 1.0
"""How long the probe of run control's endpoint may take (s)."""


def add_system_options(parser: argparse.ArgumentParser, config: bool = True) -> None:
    """--config, --data-dir and --db, with the documented defaults."""
    if config:
        parser.add_argument("--config", type=Path, help="TOML configuration (default: built in)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="data directory (default: $NUDAQ_DATA_DIR or ~/nudaq-data)",
    )
    parser.add_argument("--db", help="database URL (default: SQLite file in the data directory)")


def resolve(
    args: argparse.Namespace, *, create: bool = False, system: bool = False
) -> tuple[Config, Path, str]:
    """Configuration, data directory and database URL from the options.

    Only ``nudaq up`` creates the data directory (``create``). A command that uses a system's
    files (``system``: its sockets, logs, shifter token) needs an existing one; any other
    needs it only for the default database inside it. A missing one is a NudaqError naming it.
    """
    config = load_config(getattr(args, "config", None))
    data_dir = resolve_data_dir(args.data_dir)
    if create:
        data_dir.mkdir(parents=True, exist_ok=True)
    elif system or args.db is None:
        require_data_dir(data_dir)
    return config, data_dir, db_url(args.db, data_dir)


def listening(endpoint: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts connections at a ZeroMQ ``ipc://`` or ``tcp://`` endpoint
    (True for other transports, which the probe cannot tell)."""
    transport, _, address = endpoint.partition("://")
    try:
        if transport == "ipc":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
        elif transport == "tcp":
            host, _, port = address.rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except (OSError, ValueError):
        return False
    return True


def require_system(config: Config, data_dir: Path) -> None:
    """RunControlError in one line unless run control listens at its endpoint."""
    endpoint = config.endpoint("run_control", data_dir)
    if not listening(endpoint):
        raise RunControlError(
            f"no system running: nothing listens at {endpoint} "
            "(start one with `nudaq up`, or give its --data-dir)"
        )
