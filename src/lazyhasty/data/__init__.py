from .groups import Groups, Split
from .yinyang import yinyang, yinyang_labels, yinyang_regions

__all__ = ["Groups", "Split", "yinyang", "yinyang_labels", "yinyang_regions"]
