"""Run records, sweeps and their executors. Public names are re-exported by ``lazyhasty``."""
