"""Closed-form theory: the quadratic model of George et al. (section 4)."""

from . import examples
from .quadratic import QuadraticModel, mode_basis, simulate

__all__ = ["QuadraticModel", "simulate", "mode_basis", "examples"]
