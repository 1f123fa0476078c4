"""Configuration variants: one configuration with dotted-key overrides (replay scans).

A replay can build the same batches under several settings at once (``nudaq replay --scan
builder.ac_window_ns=500,1000,2000``): each setting is the replay's configuration with a
few keys replaced, validated by the same pydantic schema as a configuration file, so a
wrong key or value is a ConfigError naming it.
"""

from __future__ import annotations

import json

from daq.core.config import Config, parse_config
from daq.core.errors import ConfigError


def with_overrides(config: Config, overrides: dict[str, object]) -> Config:
    """A copy of ``config`` with each dotted key (``builder.ac_window_ns``) set to its value."""
    data = json.loads(config.snapshot())
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = data
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"key '{key}': no section '{part}' in the configuration")
            node = node[part]
        if leaf not in node or isinstance(node[leaf], dict):
            raise ConfigError(f"key '{key}': not a setting of the configuration")
        node[leaf] = value
    return parse_config(data, "override")


def parse_value(text: str) -> object:
    """A command-line value: JSON if it parses (numbers, true, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text
