"""The transport ceiling: raw pyzmq PUSH/PULL between two processes, replay-sized messages.

A sender process pushes ``messages`` two-part messages (a 48-byte header frame and a
payload of ``pulses`` PULSE_DTYPE records, the same buffer every time, zero-copy) with the
replay readers' socket options; this process pulls and counts them. What it measures is
the most that any replay through ZeroMQ could move on this machine and transport.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from daq.core.records import PULSE_DTYPE
from daq.formats.wire import KIND_DATA, Batch
from daq.processes.replay_reader import SEND_HWM
from daq.replay.runner import CHUNK_PULSES, RECV_HWM


def _push(endpoint: str, pulses: int, messages: int, received) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.connect(endpoint)
    batch = Batch(KIND_DATA, 1, 1, 1, 0, np.zeros(pulses, PULSE_DTYPE))
    frames = batch.frames()
    for _ in range(messages):
        sock.send_multipart(frames, copy=False)
    received.wait()  # ZeroMQ drops what is in flight from a peer that goes away
    sock.close(linger=0)
    ctx.term()


def pushpull_pulses_per_s(
    transport: str, pulses: int = CHUNK_PULSES, messages: int = 1000, repeat: int = 3
) -> float:
    """Pulses per second through PUSH/PULL over ``transport`` ('ipc' or 'tcp'), best of
    ``repeat`` sender processes."""
    return max(_once(transport, pulses, messages) for _ in range(repeat))


def _once(transport: str, pulses: int, messages: int) -> float:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, RECV_HWM)
    with tempfile.TemporaryDirectory(prefix="nqz", dir="/tmp") as tmp:
        if transport == "ipc":
            endpoint = f"ipc://{Path(tmp) / 'ceiling'}"
            pull.bind(endpoint)
        else:
            port = pull.bind_to_random_port("tcp://127.0.0.1")
            endpoint = f"tcp://127.0.0.1:{port}"
        spawn = multiprocessing.get_context("spawn")
        received = spawn.Event()
        sender = spawn.Process(target=_push, args=(endpoint, pulses, messages, received))
        sender.start()
        pull.recv_multipart(copy=False)  # the clock starts at the first message
        start = time.perf_counter()
        for _ in range(messages - 1):
            pull.recv_multipart(copy=False)
        elapsed = time.perf_counter() - start
        received.set()
        sender.join()
    pull.close()
    ctx.term()
    return (messages - 1) * pulses / elapsed
