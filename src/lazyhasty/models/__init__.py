"""Models, regime wrappers and ensembles. Public names are re-exported by ``lazyhasty``."""
