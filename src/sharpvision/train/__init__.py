"""Training (fine-tunes included): the loop, one step, the run's session and position, run directories and logs."""

from sharpvision.train.adversarial import pgd_adversary
from sharpvision.train.finetune import finetune_recipe
from sharpvision.train.loop import TrainingDiverged, read_summary, train
from sharpvision.train.rundir import RunDir, RunDirError
from sharpvision.train.step import PerturbationGroups, make_step

__all__ = ["PerturbationGroups", "RunDir", "RunDirError", "TrainingDiverged", "finetune_recipe", "make_step",
           "pgd_adversary", "read_summary", "train"]
