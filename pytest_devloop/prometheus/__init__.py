"""Prometheus targets and queries as test assertions, and the local Prometheus of embedded mode."""
