"""sharpvision: train vision models from scratch with SAM and measure their loss geometry."""

from sharpvision import analysis, config, data, evaluate, models, optim, train

__version__ = "0.1.0"
__all__ = ["analysis", "config", "data", "evaluate", "models", "optim", "train", "__version__"]
