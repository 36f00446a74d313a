"""Training: losses, steppers, probes and the engine (``train``). Public names are re-exported by ``lazyhasty``."""
