"""Errors that reach the user as one clear line."""


class SerdError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class ConfigError(SerdError):
    """A configuration key or value is wrong."""


class AudioError(SerdError):
    """An audio file or stream cannot be read."""


class ModelError(SerdError):
    """The model file and its JSON card do not agree, or cannot be loaded."""


class SourceError(SerdError):
    """A capture source cannot be opened or failed while running."""


class ManifestError(SerdError):
    """A labelled-speech manifest cannot be read."""
