from .activations import Activation
from .cnn import CNN, NTKConv2d, ResNet18
from .ensemble import Ensemble
from .mlp import MLP, NTKLinear
from .pretrained import freeze_batchnorm, load_pretrained
from .regimes import AlphaScaled, Linearized, regime_alpha

__all__ = ["MLP", "CNN", "ResNet18", "NTKLinear", "NTKConv2d", "Activation", "Ensemble", "freeze_batchnorm",
           "load_pretrained", "AlphaScaled", "Linearized", "regime_alpha"]
