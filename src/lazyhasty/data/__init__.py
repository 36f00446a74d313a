"""Datasets (public namespace ``lazyhasty.data``): the toys generated in memory, and loaders that read a local copy
in its standard format (nothing is ever downloaded)."""

from .groups import Groups, Split
from .images import (
    FASHION_CLASSES,
    DatasetError,
    cifar10,
    cscores,
    emnist,
    fashion_mnist,
    label_noise,
    mnist,
    quantile_groups,
)
from .parity import SOURCES, binary_task
from .spurious import celeba, spurious_fashion_mnist, spurious_groups, waterbirds
from .yinyang import kriener_class, kriener_yinyang, yinyang, yinyang_labels, yinyang_regions

__all__ = ["Groups", "Split", "yinyang", "yinyang_labels", "yinyang_regions", "kriener_yinyang", "kriener_class",
           "DatasetError", "FASHION_CLASSES", "fashion_mnist", "mnist", "emnist", "cifar10", "cscores", "label_noise",
           "quantile_groups", "SOURCES", "binary_task", "spurious_fashion_mnist", "spurious_groups", "celeba",
           "waterbirds"]
