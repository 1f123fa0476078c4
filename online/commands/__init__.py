"""Subcommands of ``nudaq`` for analysis and monitoring; each has ``register(subparsers)``."""
