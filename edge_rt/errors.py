"""One exception root, so the CLI can turn any user mistake into one line and an exit code."""

from __future__ import annotations


class EdgeRtError(Exception):
    """Base of every error edge_rt raises on purpose; its message is meant for the user."""

    exit_code = 1


class ConfigError(EdgeRtError):
    """A bad option, config key or value: the message names it and what is allowed."""

    exit_code = 2


class SourceError(EdgeRtError):
    """A source that cannot be parsed or opened."""

    exit_code = 3


class ModelError(EdgeRtError):
    """A model file that is missing, unreadable or not a detection model we can decode."""

    exit_code = 4


class PublishError(EdgeRtError):
    """An endpoint that cannot be bound or connected."""

    exit_code = 5


class MissingDependencyError(EdgeRtError):
    """An optional backend whose package is not installed; the message names the extra."""

    exit_code = 6


class EngineError(EdgeRtError):
    """The inference engine raised or hung: the run ends so that the service manager restarts it."""

    exit_code = 8
