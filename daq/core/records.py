"""The numpy record layouts of nudaq: one definition, imported everywhere.

A *pulse* is what a front-end reports: a timestamp on the common clock (integer ns),
an ADC amplitude, the channel and flag bits. The same 16-byte layout travels in the
serial list-mode frames, in the ZeroMQ batches and in the raw run files.

Streams (the ``stream`` id in every batch header and raw-file row):

====  ========  ==========================================================
id    name      what a pulse is
====  ========  ==========================================================
0     hpge      an HPGe ADC trigger; ``FLAG_RT`` marks a forced random trigger
1     acv       a NaI(Tl)/CsI(Tl) anti-Compton veto pulse
2     crv       a plastic cosmic-ray veto pulse
3     reactor   a reactor thermal-power reading: ``adc`` = power in kW,
                ``FLAG_REACTOR_ON`` set when the power is above the ON threshold
====  ========  ==========================================================
"""

from __future__ import annotations

import enum

import numpy as np

PULSE_DTYPE = np.dtype(
    [("t_ns", "<i8"), ("adc", "<u4"), ("channel", "<u2"), ("flags", "<u2")], align=False
)
"""One pulse: time on the common clock (ns), ADC amplitude (counts), channel, flags."""

assert PULSE_DTYPE.itemsize == 16

FLAG_RT = 0x0001
"""HPGe pulse is a random (forced) trigger, not a physics trigger."""
FLAG_REACTOR_ON = 0x0002
"""Reactor reading: thermal power above the configured ON threshold."""


class Stream(enum.IntEnum):
    """Stream ids carried by batches and raw files."""

    HPGE = 0
    ACV = 1
    CRV = 2
    REACTOR = 3


DATA_STREAMS = (Stream.HPGE, Stream.ACV, Stream.CRV)
"""The three detector front-ends (the reactor stream comes from slow control)."""
VETO_STREAMS = (Stream.ACV, Stream.CRV)
"""The veto front-ends: their pulses only tag HPGe pulses."""
RUN_STREAMS = tuple(Stream)
"""Every stream of a run: what the builder expects, and what a replay sends."""

STREAM_NAMES = {s: s.name.lower() for s in Stream}
DATA_STREAM_NAMES = tuple(STREAM_NAMES[s] for s in DATA_STREAMS)
"""The detector streams by name ("hpge", "acv", "crv"), as processes and pages show them."""


def stream_by_name(name: str) -> Stream:
    """Stream for its lower-case name ('hpge', 'acv', 'crv', 'reactor')."""
    try:
        return Stream[name.upper()]
    except KeyError:
        raise ValueError(
            f"unknown stream {name!r}; known: {', '.join(STREAM_NAMES.values())}"
        ) from None


TAG_AC = 0x01
"""Builder tag: an AC veto pulse lies within +-w_ac of the HPGe pulse."""
TAG_CRV = 0x02
"""Builder tag: a CRV pulse lies within [t - w_pre, t + w_post] of the HPGe pulse."""
VETO_TAGS = {Stream.ACV: TAG_AC, Stream.CRV: TAG_CRV}
"""The tag bit each veto stream sets."""
TAG_RT = 0x04
"""Builder tag: the HPGe pulse is a random trigger."""
TAG_REACTOR_ON = 0x08
"""Builder tag: the reactor was ON at the time of the HPGe pulse."""
TAG_UNCOVERED = 0x10
"""Builder tag: the HPGe pulse lies in HPGe dead time or in a veto's blind time (a loss on
some stream, daq.build.coverage): it fills only the UNCOVERED spectrum, never a rate."""

EVENT_DTYPE = np.dtype(
    [
        ("t_ns", "<i8"),
        ("adc", "<u4"),
        ("channel", "<u2"),
        ("flags", "<u2"),
        ("energy_keV", "<f8"),
        ("tags", "u1"),
    ]
)
"""A built HPGe event: the pulse, its calibrated energy (keV) and the builder's tag bits."""


class Category(enum.IntEnum):
    """Spectrum categories filled by the builder."""

    ALL = 0
    AC = 1
    CRV = 2
    CANDIDATE = 3
    RT = 4
    UNCOVERED = 5


CATEGORY_NAMES = {
    Category.ALL: "all",
    Category.AC: "ac",
    Category.CRV: "crv",
    Category.CANDIDATE: "candidate",
    Category.RT: "rt",
    Category.UNCOVERED: "uncovered",
}


class Loss(enum.IntEnum):
    """Why a stretch of a stream's time is not covered (the ``gap`` of a batch, the reason of
    a coverage gap in SQL): for the HPGe stream it is dead time, for a veto blind time."""

    NONE = 0
    LINE = 1
    """Serial frames lost on the line: a CRC or header failure, a frame-counter gap, noise."""
    RECONNECT = 2
    """The line broke or stalled past its timeout, and the device was reconnected."""
    OVERFLOW = 3
    """The readout's buffer overflowed: the batch's pulses were dropped."""
    SEQUENCE = 4
    """Batches missing on the data path (a ZeroMQ sequence gap)."""
    REJECTED = 5
    """A batch the builder refused (malformed or implausible content)."""
    NOT_ENDED = 6
    """After the stream's last watermark: it ended early, or never sent its end of run."""
    NOT_STARTED = 7
    """Before the stream's start."""
    RESTART = 8
    """The sending process died and a new incarnation rejoined the run: from the last batch
    the builder applied of the old one to the new one's start."""
    BUILDER_RESTART = 9
    """The builder died: what it had received and not yet recorded in the raw file, and what
    was on its way to it, up to the first batch the restarted builder received."""


LOSS_NAMES = {loss: loss.name.lower() for loss in Loss}


def empty_pulses(n: int = 0) -> np.ndarray:
    """A zeroed pulse array of length n."""
    return np.zeros(n, dtype=PULSE_DTYPE)
