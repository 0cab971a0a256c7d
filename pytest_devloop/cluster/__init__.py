"""Which cluster, the guard, the client adapter, and the recorded read API behind the fixtures."""
