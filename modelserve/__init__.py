"""modelserve: serve trained models over the Open Inference Protocol v2 and TF Serving REST APIs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelserve")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
