from .groups import Groups, Split
from .yinyang import kriener_class, kriener_yinyang, yinyang, yinyang_labels, yinyang_regions

__all__ = ["Groups", "Split", "yinyang", "yinyang_labels", "yinyang_regions", "kriener_yinyang", "kriener_class"]
