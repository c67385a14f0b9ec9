"""Evaluation of trained models."""

from sharpvision.evaluate.accuracy import evaluate
from sharpvision.evaluate.adversarial import (
    AttackError,
    autoattack_accuracy,
    fgsm,
    masking_checks,
    pgd,
    robust_accuracy,
)
from sharpvision.evaluate.corruptions import (
    CORRUPTIONS,
    CorruptionError,
    corrupt,
    corruption_accuracy,
    mce,
    relative_mce,
    severity_table,
    table_for,
    write_corrupted,
)

__all__ = ["evaluate", "AttackError", "autoattack_accuracy", "fgsm", "masking_checks", "pgd", "robust_accuracy",
           "CORRUPTIONS", "CorruptionError", "corrupt", "corruption_accuracy", "mce", "relative_mce", "severity_table",
           "table_for", "write_corrupted"]
