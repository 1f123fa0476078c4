"""The exceptions of nudaq: each names the thing that is wrong (key, file, offset, stream)."""


class NudaqError(Exception):
    """Base of every error that the CLI turns into one clear line and a non-zero exit."""


class ConfigError(NudaqError):
    """A configuration file or value is invalid; the message names the key."""


class ProtocolError(NudaqError):
    """A serial front-end spoke something the protocol does not allow."""


class WireError(NudaqError):
    """A ZeroMQ message does not follow the documented layout."""


class RawFileError(NudaqError):
    """A raw run file cannot be read; the message names the file and the offset."""


class RawHeaderError(RawFileError):
    """A raw file's schema metadata (run, configuration, version) is damaged or inconsistent:
    its checksum fails or is missing, or the recorded configuration is not a valid one."""


class RawDigestError(RawFileError):
    """An intact raw file's SHA-256 differs from the one the database recorded for it: the
    file was altered after it was written, or is not the recording the database knows."""


class RunControlError(NudaqError):
    """Run control refused a transition or a process of the system failed."""


class AnalysisError(NudaqError):
    """The requested analysis cannot be done on the selected data (no OFF data, empty window...)."""


class DiskFull(NudaqError):
    """The disk of the raw files is below its critical floor or refused a write: the run
    stops (daq.processes.builder)."""
