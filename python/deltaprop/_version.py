"""The package's version, in one place (the package and its model files read it here)."""

__version__ = "0.1.0"
