"""Subcommands of ``nudaq`` for analysis and monitoring; each module has ``register(subparsers)``."""
