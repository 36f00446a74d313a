from .activations import Activation
from .cnn import CNN, NTKConv2d, ResNet18
from .mlp import MLP, NTKLinear
from .regimes import AlphaScaled, Linearized, initial_params, regime_alpha

__all__ = ["MLP", "CNN", "ResNet18", "NTKLinear", "NTKConv2d", "Activation",
           "AlphaScaled", "Linearized", "regime_alpha", "initial_params"]
