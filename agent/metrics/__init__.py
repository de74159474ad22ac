"""Prometheus metrics: the collector and the cached /metrics exposition."""
