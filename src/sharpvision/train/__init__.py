"""Training: the loop, one step, the run's session and position, run directories and logs. What a run trains (a
classifier, contrastive pre-training, a fine-tune) its task says (sharpvision.tasks, whose ``finetune_recipe`` is
importable from here too)."""

from sharpvision.tasks import finetune_recipe
from sharpvision.train.adversarial import pgd_adversary
from sharpvision.train.loop import TrainingDiverged, read_summary, train
from sharpvision.train.rundir import RunDir, RunDirError
from sharpvision.train.step import PerturbationGroups, make_step

__all__ = ["PerturbationGroups", "RunDir", "RunDirError", "TrainingDiverged", "finetune_recipe", "make_step",
           "pgd_adversary", "read_summary", "train"]
