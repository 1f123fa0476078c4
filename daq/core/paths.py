"""Where a system keeps its files: the data directory, and the embedded database inside it.

Only ``nudaq up`` creates a data directory; every other command refuses a missing one in one
line, so a mistyped ``--data-dir`` never leaves an empty directory (and an empty database)
behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from daq.core.errors import NudaqError

DATA_DIR_ENV = "NUDAQ_DATA_DIR"


def data_dir(given: str | Path | None = None) -> Path:
    """The data directory: ``given``, else $NUDAQ_DATA_DIR, else ~/nudaq-data; with ``~``
    expanded, absolute (it is not created here)."""
    path = given or os.environ.get(DATA_DIR_ENV) or Path.home() / "nudaq-data"
    return Path(path).expanduser().absolute()


def require_data_dir(path: Path) -> Path:
    """``path`` if it is an existing directory, else a NudaqError naming it."""
    if not path.exists():
        raise NudaqError(
            f"data directory {path} does not exist (`nudaq up` creates it; "
            f"give --data-dir or ${DATA_DIR_ENV})"
        )
    if not path.is_dir():
        raise NudaqError(f"data directory {path} is not a directory")
    return path


def db_url(given: str | None, data_dir: Path) -> str:
    """The database URL: ``given``, else the embedded default, an SQLite file in the data
    directory."""
    return given or f"sqlite:///{Path(data_dir).absolute() / 'nudaq.sqlite'}"
