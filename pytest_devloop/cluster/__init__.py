"""Which cluster: the providers, the guard, the client adapter, and option resolution."""
