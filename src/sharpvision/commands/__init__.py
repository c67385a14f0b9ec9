"""Commands that make a run out of another with the building blocks (training, evaluation, analysis) and a task's
recipe: ``prune`` (:mod:`sharpvision.commands.prune`)."""
