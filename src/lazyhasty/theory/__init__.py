"""Closed-form theory: the quadratic model of George et al. (section 4), and the infinite-width NTK of a fully
connected network (Jacot et al. 2018)."""

from . import examples
from .infinite import infinite_ntk
from .quadratic import QuadraticModel, mode_basis, simulate

__all__ = ["QuadraticModel", "simulate", "mode_basis", "examples", "infinite_ntk"]
