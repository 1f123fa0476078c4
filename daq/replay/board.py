"""The replay's progress board: a small memory-mapped int64 array that the replay
(daq.replay) and its reader process (daq.replay.plan) share.

One row per stream (columns BOARD_FIELDS: last watermark sent, pulses, messages, done,
ready) and a last row of signals and facts (columns START, RELEASE, TOTAL, INTACT): the
replay's start and release signals, and what the reader's verify pass found (pulses in the
file's intact part, whether the whole file is intact), so the replay itself needs no pass
over the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daq.core.units import INF_NS

BOARD_FIELDS = ("watermark_ns", "pulses", "messages", "done", "ready")
"""Columns of a stream's row."""
WATERMARK, SENT_PULSES, SENT_MESSAGES, DONE, READY = range(len(BOARD_FIELDS))
START, RELEASE, TOTAL, INTACT = range(4)


def open_board(path: Path, streams: int | None = None) -> np.ndarray:
    """The progress board: create it for ``streams`` rows (plus the signal row), or open it."""
    if streams is not None:
        board = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.int64, shape=(streams + 1, len(BOARD_FIELDS))
        )
        board[:-1, WATERMARK] = -INF_NS  # sent nothing yet
        board.flush()
        return board
    return np.lib.format.open_memmap(path, mode="r+")


def start_readers(board: np.ndarray) -> None:
    """Give the start signal."""
    board[-1, START] = 1


def release_readers(board: np.ndarray) -> None:
    """Let the reader close its socket and exit (the builder has everything)."""
    board[-1, RELEASE] = 1


def readers_ready(board: np.ndarray) -> bool:
    """True once the reader verified the file and prepared its first message (or finished)."""
    rows = board[:-1]
    return bool(np.all((rows[:, READY] == 1) | (rows[:, DONE] == 1)))


def readers_done(board: np.ndarray) -> bool:
    """True once the reader handed every message to ZeroMQ."""
    return bool(np.all(board[:-1, DONE] == 1))


def post_file_facts(board: np.ndarray, total_pulses: int, intact: bool) -> None:
    """The reader's verify pass: pulses in the file's intact part, whether it is all intact."""
    board[-1, TOTAL] = total_pulses
    board[-1, INTACT] = int(intact)


def file_facts(board: np.ndarray) -> tuple[int, bool]:
    """What post_file_facts said (valid once readers_ready)."""
    return int(board[-1, TOTAL]), bool(board[-1, INTACT])
