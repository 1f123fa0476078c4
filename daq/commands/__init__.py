"""Subcommands of ``nudaq`` for data taking; each module has ``register(subparsers)``."""
