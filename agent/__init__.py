"""Channel Health Agent: watches sales-channel API credentials and exports their health."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("channel-health-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
