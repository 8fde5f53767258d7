"""modelserve: serve trained models over the Open Inference Protocol v2 and TF Serving REST APIs."""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("modelserve")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "batch", "load"]


def __getattr__(name: str) -> Any:
    """``modelserve.load`` (embedded.py) and ``modelserve.batch``, imported on first use: the server
    imports this package for ``__version__`` and must not import its sibling front ends."""
    if name == "load":
        return importlib.import_module("modelserve.embedded").load
    if name == "batch":
        return importlib.import_module("modelserve.batch")
    raise AttributeError(f"module 'modelserve' has no attribute {name!r}")
