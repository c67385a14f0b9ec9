"""What a report is made of: a flat list of blocks (headings, text, tables, figures), how its numbers are written
and what each number means. The same blocks become Markdown and HTML (report.render), so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from sharpvision.experiments.aggregate import attack_metric


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    id: str = ""  # an anchor (``id="claims"``) for links and for checking the page


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    """Commands a reader can paste."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    id: str = ""
    caption: str = ""
    badge: int | None = None  # the column drawn as a coloured badge in HTML (a verdict)
    wide: bool = False  # many columns: kept on one line per row, scrolling inside its frame rather than wrapping
    grey: bool = False  # every badge grey (a smoke suite's verdicts decide nothing)


@dataclass(frozen=True)
class Figure:
    """A PNG in the report's ``figures/`` folder, by name, and what it shows."""

    name: str
    caption: str


@dataclass(frozen=True)
class Terms:
    """A glossary: (term, meaning) pairs."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Banner:
    """A warning a reader must see before the numbers (a smoke suite's: they mean nothing)."""

    text: str


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (the full table below the short one); open with a click."""

    summary: str
    blocks: tuple[Heading | Text | Code | Table | Figure | Terms, ...]


Block = Heading | Text | Code | Table | Figure | Terms | Banner | Details

# every number a report can show, in one line each
GLOSSARY: dict[str, str] = {
    "test_accuracy": "top-1 accuracy on the test set after the last epoch",
    "train_accuracy": "top-1 accuracy on the training batches during the last epoch (augmented, as trained)",
    "best_val_accuracy": "the highest validation accuracy over the epochs (held-out part of the training set)",
    "val_accuracy": "top-1 accuracy on the validation split after the last epoch",
    "test_loss": "cross-entropy on the test set after the last epoch",
    "train_loss": "mean training loss of the last epoch",
    "lambda_max": "top eigenvalue of the training-loss Hessian on a fixed sample; lower = flatter",
    "hessian_lambda_max": "lambda_max from the analysis piece (sharpvision analyze --what hessian: a larger sample "
                          "and a tighter tolerance than the estimate the training loop logs)",
    "trace": "trace of the training-loss Hessian (Hutch++ estimate): the total curvature; lower = flatter",
    "ntk_kappa_at_init": "condition number of the neural tangent kernel at initialisation; higher = harder to "
                         "train (Chen et al. relate it to how much a model needs SAM)",
    "loss": "training loss at the final weights on the analysis sample",
    "loss_under_noise": "mean training loss after Gaussian noise (sigma 0.01) is added to every weight, over 20 "
                        "draws; close to loss = flat",
    "active_fraction_first_block": "fraction of the first block's neurons that are active (> 0 after the "
                                   "activation) on the analysis sample; lower = sparser",
    "corruption_clean_accuracy": "top-1 accuracy on the test images the corruption evaluation used, uncorrupted "
                                 "(the reference its corrupted accuracy and gain are compared with)",
    "mean_corruption_accuracy": "top-1 accuracy over the 15 -C corruptions x 5 severities (sharpvision eval "
                                "--corruptions; the 28px table for Fashion-MNIST)",
    "mnist_c_mean_accuracy": "top-1 accuracy over MNIST-C's 15 corruptions (sharpvision eval --mnist-c; 28 px grey "
                             "images)",
    "images_per_s": "training throughput",
    "wall_time_s": "seconds from the first training step to the end of training",
    "n": "the number of runs (seeds) a mean and its sample standard deviation are taken over",
}


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def number(value: float) -> str:
    return f"{value:.4g}"


def mean_std(stats: dict[str, float | None], scale: float = 1.0) -> str:
    """``mean ± std (n=k)``, the std being the sample standard deviation over seeds; a lone run has none, and a
    value that was not finite (None in strict JSON) reads as such."""
    if stats["mean"] is None:
        return f"not finite (n={stats['n']})"
    if scale == 100:
        mean, std = percent(stats["mean"]), percent(stats["std"] or 0.0)
    else:
        mean, std = number(stats["mean"]), f"{stats['std'] or 0.0:.2g}"
    return f"{mean} ± {std} (n={stats['n']})" if stats["n"] > 1 else f"{mean} (n={stats['n']})"


def short(stats: dict[str, float | None], scale: float = 1.0) -> str:
    """``mean ± std`` to one decimal (accuracies in points with ``scale`` 100), for the tables a reader compares
    side by side; n is said once per row."""
    if stats["mean"] is None:
        return "not finite"
    mean, std = scale * stats["mean"], scale * (stats["std"] or 0.0)
    text = f"{mean:.1f}" if abs(mean) < 1e5 else f"{mean:.2g}"
    return f"{text} ± {std:.1f}" if stats["n"] > 1 and abs(std) < 1e5 else \
        f"{text} ± {std:.1g}" if stats["n"] > 1 else text


def signed(value: float) -> str:
    """An effect with its sign, to one decimal."""
    return f"{value:+.1f}"


def glossary(names: list[str]) -> list[Block]:
    """The glossary section for the numbers a report shows, in the glossary's order."""
    items = tuple((name, meaning) for name, meaning in GLOSSARY.items() if name in names)
    items += tuple((name, f"top-1 test accuracy under {attack.upper()} ({norm}) at eps {eps:g} in pixel units "
                          "(sharpvision eval --attack)")
                   for name in names if (parsed := attack_metric(name)) for attack, norm, eps in [parsed])
    return [Heading("Glossary", id="glossary"), Terms(items)]


def figure_names(blocks: list[Block] | tuple[Block, ...]) -> list[str]:
    return [name for b in blocks for name in (figure_names(b.blocks) if isinstance(b, Details) else
                                              [b.name] if isinstance(b, Figure) else [])]
