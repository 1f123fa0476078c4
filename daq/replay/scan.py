"""Window scans: one replay pass, several settings of one key, one SQL tag per setting.

``nudaq replay ... --scan builder.ac_window_ns=500,1000,2000`` builds the same batches under
each value (the builder process's variants) and stores each under the tag
``<tag>:<key>=<value>``; online.analysis.scan reads back what an analyst compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from daq.core.config import Config
from daq.core.errors import ConfigError
from daq.core.overrides import parse_value, with_overrides


@dataclass(frozen=True)
class Scan:
    """A dotted configuration key and the values to build it with."""

    key: str
    values: list[object]

    def tag(self, base: str, value: object) -> str:
        """The SQL tag of one setting."""
        return f"{base}:{self.key}={value}"

    def variants(self, base: str) -> list[dict]:
        """The builder's variants ({"tag", "overrides"}), one per value."""
        return [{"tag": self.tag(base, v), "overrides": {self.key: v}} for v in self.values]


def parse_scan(text: str, config: Config) -> Scan:
    """``KEY=V1,V2,...`` checked against the configuration schema (ConfigError if wrong)."""
    key, sep, values = text.partition("=")
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not parsed:
        raise ConfigError(f"--scan {text!r}: expected KEY=V1,V2,... (builder.ac_window_ns=500)")
    if len({str(v) for v in parsed}) != len(parsed):
        raise ConfigError(f"--scan {text!r}: a value is given twice")
    for value in parsed:
        with_overrides(config, {key.strip(): value})
    return Scan(key.strip(), parsed)
