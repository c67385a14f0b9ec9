"""sharpvision: train vision models from scratch with SAM and measure their loss geometry."""

from sharpvision import config, data, models, optim

__version__ = "0.1.0"
__all__ = ["config", "data", "models", "optim", "__version__"]
