from .cscores import estimate_cscores, learning_speed
from .losses import BCE, MSE, CrossEntropy, Hinge, Loss, QuadraticHinge, SoftHinge, get_loss
from .probes import LinearityProbe, Milestones, ProbeContext, Schedule, loss_probe, parameter_distance_probe
from .steppers import GD, SGD, Evaluation, GradientFlow, MomentumFlow, Stepper
from .train import METRIC_COLUMNS, TRACE_COLUMNS, RecordSink, Stop, TrainResult, fork, metrics_frame, seeded, train

__all__ = ["BCE", "MSE", "CrossEntropy", "Hinge", "Loss", "QuadraticHinge", "SoftHinge", "get_loss",
           "LinearityProbe", "Milestones", "ProbeContext", "Schedule", "loss_probe", "parameter_distance_probe",
           "GD", "SGD", "Evaluation", "GradientFlow", "MomentumFlow", "Stepper", "Stop", "TrainResult", "RecordSink",
           "METRIC_COLUMNS", "TRACE_COLUMNS", "metrics_frame", "fork", "seeded", "train",
           "estimate_cscores", "learning_speed"]
