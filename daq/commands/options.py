"""Options and resolution shared by the subcommands that talk to a system or a database."""

from __future__ import annotations

import argparse
from pathlib import Path

from daq.core.config import Config, load_config
from daq.core.paths import data_dir as resolve_data_dir
from daq.core.paths import db_url


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


def resolve(args: argparse.Namespace) -> tuple[Config, Path, str]:
    """Configuration, data directory (created) and database URL from the options."""
    config = load_config(getattr(args, "config", None))
    data_dir = resolve_data_dir(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return config, data_dir, db_url(args.db, data_dir)
