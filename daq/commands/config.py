"""``nudaq config check FILE``: validate a configuration and name what is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

from daq.core.config import EXAMPLE_CONFIG, load_config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "config",
        help="check or show configurations",
        description="Validate a configuration file, or print the example configuration.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a TOML configuration file",
        description="Validate FILE; each wrong key is named with the reason.",
    )
    check.add_argument("file", type=Path)
    check.set_defaults(func=run_check)
    example = sub.add_parser(
        "example",
        help="print the example (Kuo-Sheng) configuration",
        description="Print the shipped example configuration.",
    )
    example.set_defaults(func=run_example)


def run_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: valid (sha256 {config.digest()[:12]})")
    return 0


def run_example(args: argparse.Namespace) -> int:
    print(EXAMPLE_CONFIG.read_text(), end="")
    return 0
