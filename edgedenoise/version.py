"""The package's version: the one source (pyproject.toml reads it; the package re-exports it). Its own
module, so that modules of the package that stamp it need not import the package that imports them."""
__version__ = "0.1.0"
