"""Where a system keeps its files: the data directory, and the embedded database inside it."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "NUDAQ_DATA_DIR"


def data_dir(given: str | Path | None = None) -> Path:
    """The data directory: ``given``, else $NUDAQ_DATA_DIR, else ~/nudaq-data; with ``~``
    expanded, absolute (it is not created here)."""
    path = given or os.environ.get(DATA_DIR_ENV) or Path.home() / "nudaq-data"
    return Path(path).expanduser().absolute()


def db_url(given: str | None, data_dir: Path) -> str:
    """The database URL: ``given``, else the embedded default, an SQLite file in the data
    directory."""
    return given or f"sqlite:///{Path(data_dir).absolute() / 'nudaq.sqlite'}"
