"""The simulator's ground truth on disk: every generated pulse and every injected fault.

``truth.arrow`` is an Arrow IPC stream of TRUTH_DTYPE columns (one record batch per flush,
at least every second), readable while the simulator runs: ``read_truth`` returns every
complete batch and ignores a partly written tail. ``faults.json`` maps each front-end name to
its injected-fault counts (hardware_sim.faults.FaultCounts).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from hardware_sim.generator import TRUTH_DTYPE

log = logging.getLogger(__name__)

TRUTH_FILE = "truth.arrow"
FAULTS_FILE = "faults.json"
SCHEMA = pa.schema([(name, pa.from_numpy_dtype(TRUTH_DTYPE[name])) for name in TRUTH_DTYPE.names])


class TruthWriter:
    """Appends truth rows to an Arrow IPC stream file; ``flush`` writes what was appended."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._writer = pa.ipc.new_stream(self._file, SCHEMA)
        pa.array(np.zeros(1))  # pyarrow's first conversion loads pandas: do it before the clock
        self._pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.rows = 0

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self._pending.append(rows)
            self.pending_rows += len(rows)

    def flush(self) -> None:
        """Write the appended rows as one record batch and flush the file."""
        if self._pending:
            rows = np.concatenate(self._pending)
            self._pending.clear()
            self.pending_rows = 0
            arrays = [pa.array(np.ascontiguousarray(rows[name])) for name in TRUTH_DTYPE.names]
            self._writer.write_batch(pa.record_batch(arrays, schema=SCHEMA))
            self.rows += len(rows)
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._file.close()
        log.info("truth: %d rows in %s", self.rows, self.path)


def read_truth(path: str | Path) -> np.ndarray:
    """Every complete truth batch of ``path`` as one TRUTH_DTYPE array (a partly written
    last batch, as a running simulator may leave it, is ignored)."""
    batches = []
    with open(path, "rb") as f:
        try:
            reader = pa.ipc.open_stream(f)
            while True:
                batches.append(reader.read_next_batch())
        except (StopIteration, pa.ArrowInvalid, OSError):
            pass
    out = np.zeros(sum(b.num_rows for b in batches), dtype=TRUTH_DTYPE)
    pos = 0
    for batch in batches:
        for name in TRUTH_DTYPE.names:
            out[name][pos : pos + batch.num_rows] = batch.column(name).to_numpy(
                zero_copy_only=False
            )
        pos += batch.num_rows
    return out


def write_fault_counts(path: Path, counts: dict[str, dict[str, int]]) -> None:
    """Write the per-device fault counts as JSON, atomically (a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_fault_counts(path: str | Path) -> dict[str, dict[str, int]]:
    """The per-device fault counts written by the simulator."""
    return json.loads(Path(path).read_text())
