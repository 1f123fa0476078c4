"""Driver of the slow-control device: reactor thermal power, HPGe bias, LN2 level, temperature."""

from __future__ import annotations

from dataclasses import dataclass, fields

from daq.core.errors import ProtocolError
from daq.drivers.serial_device import SerialDevice


@dataclass(frozen=True, slots=True)
class Reading:
    """One slow-control reading, stamped with the common clock."""

    t_ns: int
    power_MW: float
    hv_V: float
    ln2_pct: float
    temp_C: float


QUANTITIES = tuple(f.name for f in fields(Reading) if f.name != "t_ns")
"""The measured quantities of a reading, named with their units."""


class SlowControlDriver(SerialDevice):
    """The slow-control device on a pyserial URL (``READ?``, ``CONF <KEY> <VALUE>``)."""

    def read(self) -> Reading:
        """Read every quantity once (``READ?``)."""
        values = self.query_keyvalues("READ?")
        try:
            return Reading(
                t_ns=int(values["t_ns"]), **{name: float(values[name]) for name in QUANTITIES}
            )
        except (KeyError, ValueError) as err:
            raise ProtocolError(
                f"{self.url}: READ?: bad or missing value {err} in {values}"
            ) from None

    def set(self, key: str, value: object) -> None:
        """Set one device setting (``CONF POWER <MW>`` on the simulated device)."""
        self.command("CONF", key.upper(), value)
