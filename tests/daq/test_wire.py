"""ZeroMQ batch layout: zero-copy round trip and rejection of malformed messages."""

import numpy as np
import pytest
import zmq

from daq.core.errors import WireError
from daq.core.records import PULSE_DTYPE, Stream
from daq.formats.wire import HEADER, KIND_DATA, KIND_EOR, Batch, decode, send_batch


@pytest.fixture
def pair():
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://wire-test")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://wire-test")
    yield push, pull
    push.close(0)
    pull.close(0)
    ctx.term()


def test_round_trip(pair):
    push, pull = pair
    pulses = np.zeros(1000, PULSE_DTYPE)
    pulses["t_ns"] = np.arange(1000) * 17
    pulses["adc"] = np.arange(1000)
    send_batch(push, Batch(KIND_DATA, Stream.ACV, 7, 3, 20_000, pulses, 5, 2, 1))
    send_batch(push, Batch(KIND_EOR, Stream.ACV, 7, 4, 30_000, pulses[:0]))
    got = decode(pull.recv_multipart(copy=False))
    assert (got.kind, got.stream, got.run, got.seq, got.watermark_ns) == (
        KIND_DATA,
        1,
        7,
        3,
        20_000,
    )
    assert (got.dead_ns, got.dropped, got.lost_frames) == (5, 2, 1)
    assert np.array_equal(got.pulses, pulses)
    eor = decode(pull.recv_multipart())
    assert eor.kind == KIND_EOR and len(eor.pulses) == 0


@pytest.mark.parametrize(
    "parts, message",
    [
        ([b"x"], "expected 2 message parts"),
        ([b"short", b""], "header is 5 bytes"),
        ([HEADER.pack(b"XX", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), b""], "bad magic"),
        ([HEADER.pack(b"NQ", 9, 1, 0, 0, 0, 0, 0, 0, 0, 0), b""], "unsupported wire version"),
        ([HEADER.pack(b"NQ", 1, 7, 0, 0, 0, 0, 0, 0, 0, 0), b""], "unknown message kind"),
        ([HEADER.pack(b"NQ", 1, 1, 9, 0, 0, 0, 0, 0, 0, 0), b""], "unknown stream id 9"),
        ([HEADER.pack(b"NQ", 1, 1, 0, 0, 2, 0, 0, 0, 0, 0), b"\0" * 31], "payload is 31 bytes"),
    ],
)
def test_malformed_messages_are_named(parts, message):
    with pytest.raises(WireError, match=message):
        decode(parts)
