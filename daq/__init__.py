"""nudaq data acquisition: front-end drivers, ZeroMQ transport, builder, run control."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nudaq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
