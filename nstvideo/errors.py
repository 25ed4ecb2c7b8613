"""Typed errors. Each message names what was expected and what to do; the CLI prints it on one
line and exits 2."""


class NstError(Exception):
    """Base for every error a user can fix (bad input, usage, missing weights)."""

    exit_code = 2


class UsageError(NstError):
    """A flag or argument has a value that cannot work."""


class InputError(NstError):
    """An input file is missing, unreadable or not what it claims to be."""


class OutputError(NstError):
    """An output could not be written whole (a full disk, a failing encoder); nothing was kept."""


class WeightsError(NstError):
    """VGG weights are missing or not a usable state dict."""


class LayerError(UsageError):
    """An unknown layer name."""


class DeviceError(UsageError):
    """The requested device is not available."""
