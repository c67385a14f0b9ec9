"""Training: the loop, one step, checkpoints, run directories and logs."""

from sharpvision.train.checkpoint import CheckpointError
from sharpvision.train.loop import Runtime, TrainingDiverged, build_model, read_summary, train
from sharpvision.train.rundir import RunDir, RunDirError
from sharpvision.train.step import make_step

__all__ = ["CheckpointError", "RunDir", "RunDirError", "Runtime", "TrainingDiverged", "build_model", "make_step",
           "read_summary", "train"]
