"""Experiment suites: a grid of training runs (cells) from one recipe and its axes, run resumably by one or many
processes into one directory, with their aggregate (``sharpvision reproduce``)."""

from sharpvision.experiments.aggregate import aggregate
from sharpvision.experiments.runner import cell_status, run_cell, run_suite
from sharpvision.experiments.suite import Cell, Suite, SuiteError, load_suite, select

__all__ = ["Cell", "Suite", "SuiteError", "aggregate", "cell_status", "load_suite", "run_cell", "run_suite", "select"]
