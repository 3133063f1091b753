"""Errors that the CLI reports as one clear line (no traceback)."""


class EdgeDenoiseError(Exception):
    """Base class: the message says what went wrong and, where it can, what to do."""


class DataError(EdgeDenoiseError):
    """An image, folder or frame that cannot be used."""


class ModelError(EdgeDenoiseError):
    """A model or checkpoint file that is missing, corrupt or does not match its config."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after finalising its outputs; exit status 128 + signal."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum, self.name = signum, name
