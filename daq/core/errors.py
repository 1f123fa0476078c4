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


class RunControlError(NudaqError):
    """Run control refused a transition or a process of the system failed."""


class AnalysisError(NudaqError):
    """The requested analysis cannot be done on the selected data (no OFF data, empty window...)."""
