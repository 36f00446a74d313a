from .losses import BCE, MSE, CrossEntropy, Hinge, Loss, QuadraticHinge, SoftHinge, get_loss
from .probes import Milestones, ProbeContext, Schedule, loss_probe, parameter_distance_probe
from .steppers import GD, SGD, GradientFlow, MomentumFlow, Stepper
from .train import Stop, TrainResult, fork, seeded, train

__all__ = ["BCE", "MSE", "CrossEntropy", "Hinge", "Loss", "QuadraticHinge", "SoftHinge", "get_loss",
           "Milestones", "ProbeContext", "Schedule", "loss_probe", "parameter_distance_probe",
           "GD", "SGD", "GradientFlow", "MomentumFlow", "Stepper", "Stop", "TrainResult", "fork", "seeded", "train"]
