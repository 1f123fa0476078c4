"""The text half of every device's serial protocol, on top of pyserial (no physics here).

``serial.serial_for_url`` reaches a real port (``/dev/ttyUSB0``), a serial-over-Ethernet
server (``socket://host:port``) or a pty, so the same driver code talks to the hardware and
to the simulated devices of hardware_sim. ``SerialDevice`` is the text half of
daq.formats.protocol that every device shares (one command line, one reply line); the
list-mode driver adds the binary frames, the slow-control driver the readings.
"""

from __future__ import annotations

import logging

import serial

from daq.core.errors import ProtocolError
from daq.formats.protocol import format_command, parse_keyvalues, parse_reply

log = logging.getLogger(__name__)


class SerialDevice:
    """A device on a pyserial URL that answers text commands with one ``OK``/``ERR`` line.

    Every failure (cannot open, line lost, no reply within ``timeout_s``, garbled or refused
    reply) raises ProtocolError naming the device URL and the command.
    """

    def __init__(self, url: str, baudrate: int = 921600, timeout_s: float = 5.0) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.port = self._open()

    def _open(self) -> serial.SerialBase:
        try:
            return serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as err:
            raise ProtocolError(f"{self.url}: cannot open: {err}") from None

    def command(self, command: str, *args: object) -> list[str]:
        """Send one command line and return the values of its ``OK`` reply.

        Bytes pending from before the command (line noise, a previous run's tail) are
        discarded first, so the next line read is this command's reply.
        """
        line = format_command(command, *args)
        what = line.decode("ascii").strip()
        try:
            self.port.reset_input_buffer()
            self.port.write(line)
            reply = self.port.read_until(b"\n")
        except (serial.SerialException, OSError) as err:
            raise ProtocolError(f"{self.url}: {what}: line lost: {err}") from None
        if not reply.endswith(b"\n"):
            raise ProtocolError(
                f"{self.url}: {what}: no complete reply within {self.timeout_s:g} s"
                f" (got {reply[:80]!r})"
            )
        try:
            return parse_reply(reply)
        except ProtocolError as err:
            raise ProtocolError(f"{self.url}: {what}: {err}") from None

    def query_int(self, command: str) -> int:
        """The integer value of a one-value reply (``CLOCK?``, ``START``)."""
        values = self.command(command)
        try:
            return int(values[0])
        except (IndexError, ValueError):
            raise ProtocolError(
                f"{self.url}: {command}: expected an integer, got {values!r}"
            ) from None

    def query_keyvalues(self, command: str) -> dict[str, str]:
        """The ``KEY=VALUE`` values of a reply (``CONF?``, ``READ?``)."""
        values = self.command(command)
        try:
            return parse_keyvalues(values)
        except ProtocolError as err:
            raise ProtocolError(f"{self.url}: {command}: {err}") from None

    def identify(self) -> str:
        """The device's identification ``NUDAQ,<model>,<serial>,<firmware>``."""
        values = self.command("*IDN?")
        if not values or not values[0].startswith("NUDAQ,"):
            raise ProtocolError(f"{self.url}: *IDN?: unexpected identification {values!r}")
        return " ".join(values)

    def reconnect(self) -> None:
        """Close the line and open it again (after the device or the network dropped it)."""
        self.close()
        self.port = self._open()
        log.info("%s: reconnected", self.url)

    def close(self) -> None:
        """Close the line."""
        try:
            self.port.close()
        except (serial.SerialException, OSError) as err:
            log.warning("%s: error while closing: %s", self.url, err)
