"""Which tests a change affects: dependency records, the impact graph and the selection."""
