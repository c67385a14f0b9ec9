"""Evaluation of trained models."""

from sharpvision.evaluate.accuracy import evaluate

__all__ = ["evaluate"]
