"""Data freshness: how old each account's data is, per data set.

A *source type* (``heartbeat``, ``sql``, ``file``, or one a plugin registers through the
``register_freshness_sources`` hook) is a :class:`~agent.freshness.source.FreshnessSource`
subclass. The configuration names *sources* (instances of a type, under
``freshness_sources:``) and *data sets* (per channel and account, under ``datasets:``), each
read from one source with its own ``max_age``.
"""

from agent.freshness.source import (
    MAX_FUTURE_SKEW,
    SOURCE_ERROR_REASONS,
    Dataset,
    FreshnessSource,
    SourceError,
)

__all__ = ["MAX_FUTURE_SKEW", "SOURCE_ERROR_REASONS", "Dataset", "FreshnessSource", "SourceError"]
