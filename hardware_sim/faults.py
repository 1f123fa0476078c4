"""Fault injection on a simulated front-end's outgoing binary bytes.

Rates are per simulated second (daq.core.config.Faults): for a frame covering dt simulated
seconds, Poisson(rate x dt) noise bytes go in front of it, Poisson(rate x dt) of its bytes are
removed, and with Poisson(rate x dt) > 0 distinct bits of it are flipped (an END frame covers
no time, so it is never damaged). Disconnects and stalls are decided on the simulated clock.
With probability ``end_frame_loss`` the END frame that answers STOP never leaves the device
(the host must give up waiting for it), and ``reply_noise_bytes`` random bytes go in front
of every text reply (the host reads a garbled line). Everything injected is counted in
``counts`` so a test can check that the reader noticed every damaged frame: a frame that lost
a byte or had a bit flipped never decodes (CRC-32 catches any such change), so it shows up as
a counter gap. All of it is off by default, and a fault that is off draws no random numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from daq.core.config import Faults


@dataclass
class FaultCounts:
    """What a device injected since it was made."""

    noise_bytes: int = 0
    dropped_bytes: int = 0
    corrupted_frames: int = 0
    """Frames with at least one flipped bit."""
    damaged_frames: int = 0
    """Frames with a flipped bit or a removed byte: each is lost to the reader."""
    disconnects: int = 0
    stalls: int = 0
    overflow_frames: int = 0
    """Frames thrown away because the host did not read (output buffer full)."""
    lost_end_frames: int = 0
    garbled_replies: int = 0
    """Text replies sent with noise in front."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FaultInjector:
    """Applies one device's configured faults to its frames (see module docstring)."""

    def __init__(self, faults: Faults, rng: np.random.Generator) -> None:
        self.faults = faults
        self.rng = rng
        self.counts = FaultCounts()
        self._stall_index = 0

    def apply(self, frame: bytes, dt_s: float) -> bytes:
        """The bytes to send for a frame covering dt_s simulated seconds."""
        f = self.faults
        rng = self.rng
        n_noise = rng.poisson(f.noise_bytes_per_s * dt_s) if f.noise_bytes_per_s else 0
        n_drop = rng.poisson(f.dropped_bytes_per_s * dt_s) if f.dropped_bytes_per_s else 0
        n_flip = rng.poisson(f.corrupt_frames_per_s * dt_s) if f.corrupt_frames_per_s else 0
        if not (n_noise or n_drop or n_flip):
            return frame
        data = np.frombuffer(frame, dtype=np.uint8).copy()
        if n_flip:
            bits = rng.choice(data.size * 8, size=min(n_flip, data.size * 8), replace=False)
            np.bitwise_xor.at(data, bits // 8, (1 << (bits % 8)).astype(np.uint8))
            self.counts.corrupted_frames += 1
        if n_drop:
            n_drop = min(n_drop, data.size)
            data = np.delete(data, rng.choice(data.size, size=n_drop, replace=False))
            self.counts.dropped_bytes += n_drop
        if n_flip or n_drop:
            self.counts.damaged_frames += 1
        self.counts.noise_bytes += n_noise
        noise = rng.integers(0, 256, n_noise, dtype=np.uint8)
        return noise.tobytes() + data.tobytes()

    def end_frame_lost(self) -> bool:
        """Whether the END frame being sent now is lost (drawn with end_frame_loss)."""
        p = self.faults.end_frame_loss
        if p <= 0 or (p < 1 and self.rng.random() >= p):
            return False
        self.counts.lost_end_frames += 1
        return True

    def reply(self, line: bytes) -> bytes:
        """The bytes to send for a text reply line: reply_noise_bytes random bytes in front."""
        n = self.faults.reply_noise_bytes
        if not n:
            return line
        self.counts.garbled_replies += 1
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes() + line

    def stalled(self, t_s: float) -> bool:
        """Whether the device sends nothing at t_s simulated seconds since the crate started.

        Stalls start at every multiple k >= 1 of stall_every_s and last stall_s; each new
        stall seen here is counted once.
        """
        f = self.faults
        if f.stall_every_s <= 0 or f.stall_s <= 0:
            return False
        k, into = divmod(t_s, f.stall_every_s)
        if k < 1 or into >= f.stall_s:
            return False
        if int(k) != self._stall_index:
            self._stall_index = int(k)
            self.counts.stalls += 1
        return True

    def disconnect_due(self, running_s: float) -> bool:
        """Whether the line should drop after running_s simulated seconds of streaming."""
        after = self.faults.disconnect_after_s
        return after > 0 and running_s >= after
