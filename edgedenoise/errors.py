"""Errors that the CLI reports as one clear line (no traceback)."""


class EdgeDenoiseError(Exception):
    """Base class: the message says what went wrong and, where it can, what to do."""


class DataError(EdgeDenoiseError):
    """An image, folder or frame that cannot be used."""


class ModelError(EdgeDenoiseError):
    """A model or checkpoint file that is missing, corrupt or does not match its config."""
