"""Linearity metrics, equal progress and scaling fits. Public names are re-exported by ``lazyhasty``."""
