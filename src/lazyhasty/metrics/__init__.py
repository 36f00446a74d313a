from .alignment import center, kernel_alignment, kernel_distance, kernel_target_alignment, targets_matrix
from .linearity import parameter_distance, representation_alignment, sign_similarity
from .ntk import ntk_gram
from .progress import at_equal_progress, relative_difference
from .scaling import broken_power_law, consistent, crossing_time, power_law, seed_bootstrap

__all__ = ["ntk_gram", "kernel_alignment", "kernel_distance", "kernel_target_alignment", "center",
           "targets_matrix", "sign_similarity", "representation_alignment", "parameter_distance",
           "at_equal_progress", "relative_difference", "power_law", "broken_power_law", "consistent",
           "seed_bootstrap", "crossing_time"]
