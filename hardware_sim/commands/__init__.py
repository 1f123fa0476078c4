"""Subcommands of ``nudaq`` that belong to the simulator: sim generate, bench."""
