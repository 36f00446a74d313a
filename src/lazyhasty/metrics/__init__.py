"""Linearity metrics, equal progress and scaling fits (namespace ``lazyhasty.metrics``; ``ntk_gram`` is also
``lazyhasty.ntk_gram``)."""

from .._lazy import exports as _exports

__getattr__, __dir__, __all__ = _exports(__name__, {
    "ntk": "ntk_gram",
    "alignment": "kernel_alignment kernel_distance kernel_target_alignment",
    "linearity": "sign_similarity representation_alignment parameter_distance",
    "progress": "at_equal_progress",
    "scaling": "power_law broken_power_law consistent seed_bootstrap crossing_time",
})
