"""REST service around the ``model`` package: inference, model versions and training jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fusion-service")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
