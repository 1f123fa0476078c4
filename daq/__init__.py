"""nudaq data acquisition: drivers, byte formats, the event builder, the SQL store, run control,
supervision, the process mains and replay (the bottom layer: imports neither online nor
hardware_sim)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nudaq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
