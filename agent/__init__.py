"""Channel Health Agent: watches sales-channel API credentials and exports their health."""


def __getattr__(name: str) -> str:
    # __version__ on first use: importlib.metadata costs ~0.1 s of CPU to import, and the
    # commands that only talk to a running agent (status, mark-synced) never show a version
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("channel-health-agent")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
