"""The subcommands with more to them than one library call: what ``sharpvision`` adds to the building blocks
(flags checked together, default output folders, the lines printed). ``prune`` (:mod:`sharpvision.commands.prune`,
also ``prune_run``: a run made out of another with a task's recipe), ``eval``
(:mod:`sharpvision.commands.evaluate`) and ``analyze`` (:mod:`sharpvision.commands.analyze`)."""
