"""Bringing a cluster to the rendered state: the syncer, its plan, readiness and the state under `.devloop/`."""
