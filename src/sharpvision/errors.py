"""The errors a user can cause (bad recipe, file, checkpoint, run directory); the CLI prints them in one line."""

from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    from sharpvision.config import ConfigError
    from sharpvision.data import DataError
    from sharpvision.train import CheckpointError, RunDirError, TrainingDiverged
    return (ConfigError, DataError, CheckpointError, RunDirError, TrainingDiverged, ValueError, FileNotFoundError)
