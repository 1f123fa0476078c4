"""Helpers of the simulated-hardware tests: a minimal serial host and truth selections.

The host talks to the devices through ``serial.serial_for_url`` and decodes frames with
daq.formats.protocol.FrameDecoder only, so these tests check the devices against the protocol, not
against another module's driver.
"""

from __future__ import annotations

import time

import numpy as np
import serial

from daq.core.config import Config
from daq.core.records import PULSE_DTYPE
from daq.formats.protocol import FRAME_END, Frame, FrameDecoder, format_command
from hardware_sim.crate import SimCrate
from hardware_sim.truth import read_truth


class Host:
    """A host on a pyserial URL: text commands, then frames until the END frame."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, timeout=5)
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    def ask(self, *words: object) -> str:
        """One command, its reply line (without the newline)."""
        self.port.timeout = 5
        self.port.write(format_command(*map(str, words)))
        reply = self.port.read_until(b"\n")
        assert reply.endswith(b"\n"), f"no reply to {words}: {reply!r}"
        return reply.decode().strip()

    def start(self) -> int:
        reply = self.ask("START")
        assert reply.startswith("OK "), reply
        self.decoder = FrameDecoder()
        self.frames = []
        return int(reply.split()[1])

    def read_for(self, wall_s: float) -> None:
        """Decode whatever arrives during wall_s seconds."""
        self.port.timeout = 0.05
        deadline = time.monotonic() + wall_s
        while time.monotonic() < deadline:
            self.frames += self.decoder.feed(self.port.read(1 << 20))

    def stop(self, timeout_s: float = 10.0) -> Frame:
        """STOP and read until the END frame; returns it (also the last of ``frames``)."""
        self.port.write(b"STOP\n")
        self.port.timeout = 0.05
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.port.read(1 << 20)
            if not data:  # quiet line: a corrupted length may be holding back the END frame
                self.decoder.abandon_partial()
            self.frames += self.decoder.feed(data)
            if self.frames and self.frames[-1].kind == FRAME_END:
                return self.frames[-1]
        raise AssertionError(f"no END frame within {timeout_s} s: {self.decoder.stats}")

    def pulses(self) -> np.ndarray:
        parts = [f.pulses for f in self.frames]
        return np.concatenate(parts) if parts else np.zeros(0, PULSE_DTYPE)

    def close(self) -> None:
        self.port.close()


def pulse_fields(a: np.ndarray) -> np.ndarray:
    """The PULSE_DTYPE fields of pulses or truth rows, for exact comparison."""
    out = np.zeros(len(a), PULSE_DTYPE)
    for name in PULSE_DTYPE.names:
        out[name] = a[name]
    return out


def recorded(truth: np.ndarray, stream: int, t_from: int, t_to: int) -> np.ndarray:
    """Truth rows of one stream that the front-end recorded in [t_from, t_to)."""
    t = truth["t_ns"]
    return truth[(truth["stream"] == stream) & truth["recorded"] & (t >= t_from) & (t < t_to)]


def quiet_config(**sim) -> Config:
    """A configuration with modest veto rates; ``sim`` overrides sim.* keys."""
    config = Config()
    config.sim.acv_singles_hz = 200.0
    config.sim.crv_singles_hz = 100.0
    config.sim.speed = 20.0
    for key, value in sim.items():
        setattr(config.sim, key, value)
    return config


def closed_truth(crate: SimCrate) -> np.ndarray:
    """Close the crate (flushing its truth) and read the truth file back."""
    crate.close()
    return read_truth(crate.sim_dir / "truth.arrow")
