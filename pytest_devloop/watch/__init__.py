"""Watch mode: the loop, the coalescing of file events, and the warm test-process starter."""
