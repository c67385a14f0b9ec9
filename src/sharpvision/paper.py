"""The papers' reference numbers in one table, each with its source (table and row), and the texts the claims and the
report quote from them: a claim's ``paper`` line and the short per-comparison value (``+11.0 vs +5.3``) that
claims.json carries in each test, so the report and the docs read the paper's side from claims.json and never
write a number of their own.

``checked`` says whether a second source agrees with the number (the abstract, a review, the released checkpoints);
an unchecked one is recalled from the paper's table and is a scale reference, not a test gate.
"""

from __future__ import annotations

from dataclasses import dataclass

CHEN = "Chen et al."  # "When Vision Transformers Outperform ResNets without Pretraining or Strong Data Augmentations"
FORET = "Foret et al."  # "Sharpness-Aware Minimization for Efficiently Improving Generalization"


@dataclass(frozen=True)
class Number:
    quantity: str  # "top-1", "top-1 gain", "ImageNet-C", "ImageNet-C gain", "lambda_max", "NTK kappa", ...
    model: str  # the paper's row: "ViT-B/16" (trained with AdamW) or "ViT-B/16-SAM"
    value: float
    source: str  # where it is printed: "Chen et al. Table 2, row ViT-B/16-SAM"
    checked: bool = False  # a second source agrees


def _row(paper: str, table: str, model: str) -> str:
    return f"{paper} {table}, row {model}"


NUMBERS: tuple[Number, ...] = (
    # Chen et al. Table 2: ImageNet top-1 from scratch at 224 px, Inception crop and flip only; "(+x)" is SAM's gain
    Number("top-1", "ResNet-50-SAM", 76.7, _row(CHEN, "Table 2", "ResNet-50-SAM"), True),
    Number("top-1 gain", "ResNet-50", 0.7, _row(CHEN, "Table 2", "ResNet-50-SAM"), True),
    Number("top-1", "ResNet-152-SAM", 79.3, _row(CHEN, "Table 2", "ResNet-152-SAM")),
    Number("top-1 gain", "ResNet-152", 0.8, _row(CHEN, "Table 2", "ResNet-152-SAM")),
    Number("top-1", "ViT-S/16-SAM", 78.1, _row(CHEN, "Table 2", "ViT-S/16-SAM"), True),
    Number("top-1 gain", "ViT-S/16", 3.7, _row(CHEN, "Table 2", "ViT-S/16-SAM"), True),
    Number("top-1", "ViT-B/16-SAM", 79.9, _row(CHEN, "Table 2", "ViT-B/16-SAM"), True),
    Number("top-1 gain", "ViT-B/16", 5.3, _row(CHEN, "Table 2", "ViT-B/16-SAM"), True),
    Number("top-1", "Mixer-B/16-SAM", 77.4, _row(CHEN, "Table 2", "Mixer-B/16-SAM"), True),
    Number("top-1 gain", "Mixer-B/16", 11.0, _row(CHEN, "Table 2", "Mixer-B/16-SAM"), True),
    Number("ImageNet-C gain", "ResNet-152", 2.2, _row(CHEN, "Table 2", "ResNet-152-SAM"), True),
    Number("ImageNet-C gain", "ViT-B/16", 9.9, _row(CHEN, "Table 2", "ViT-B/16-SAM"), True),
    Number("ImageNet-C gain", "Mixer-B/16", 15.0, _row(CHEN, "Table 2", "Mixer-B/16-SAM"), True),
    # Chen et al. Table 1: sharpness and trainability at convergence (kappa: the NTK at initialisation)
    Number("top-1", "ResNet-50", 76.0, _row(CHEN, "Table 2", "ResNet-50-SAM") + " (76.7 minus its gain 0.7)", True),
    Number("top-1", "ResNet-152", 78.5, _row(CHEN, "Table 1", "ResNet-152")),
    Number("top-1", "ViT-B/16", 74.6, _row(CHEN, "Table 1", "ViT-B/16"), True),
    Number("top-1", "Mixer-B/16", 66.4, _row(CHEN, "Table 1", "Mixer-B/16"), True),
    Number("lambda_max", "ResNet-152", 179.8, _row(CHEN, "Table 1", "ResNet-152")),
    Number("lambda_max", "ResNet-152-SAM", 42.0, _row(CHEN, "Table 1", "ResNet-152-SAM")),
    Number("lambda_max", "ViT-B/16", 738.8, _row(CHEN, "Table 1", "ViT-B/16")),
    Number("lambda_max", "ViT-B/16-SAM", 20.9, _row(CHEN, "Table 1", "ViT-B/16-SAM")),
    Number("lambda_max", "Mixer-B/16", 1644.4, _row(CHEN, "Table 1", "Mixer-B/16")),
    Number("lambda_max", "Mixer-B/16-SAM", 22.5, _row(CHEN, "Table 1", "Mixer-B/16-SAM")),
    Number("NTK kappa", "ResNet-152", 2801.6, _row(CHEN, "Table 1", "ResNet-152")),
    Number("NTK kappa", "ViT-B/16", 6206.8, _row(CHEN, "Table 1", "ViT-B/16")),
    Number("NTK kappa", "Mixer-B/16", 14468.0, _row(CHEN, "Table 1", "Mixer-B/16")),
    # Foret et al. Sec. 3.3 (robustness to label noise): ResNet-32 on CIFAR-10, clean test accuracy at 80% noise
    Number("test accuracy at 80% label noise", "ResNet-32-SAM", 77.9,
           f"{FORET} Sec. 3.3 label-noise table, row SAM, column 80%", True),
    Number("test accuracy at 80% label noise", "ResNet-32", 26.2,
           f"{FORET} Sec. 3.3 label-noise table, row SGD, column 80%", True),
)

# the paper's model each of our family labels stands for (the largest of its family in Chen et al. Tables 1-2)
FAMILY: dict[str, str] = {"resnet": "ResNet-152", "vit": "ViT-B/16", "mixer": "Mixer-B/16"}


def number(quantity: str, model: str) -> Number:
    """The table's entry for ``quantity`` of ``model``; a KeyError names what is not in the table."""
    for n in NUMBERS:
        if n.quantity == quantity and n.model == model:
            return n
    raise KeyError(f"the paper table has no {quantity} of {model}")


def value(quantity: str, model: str) -> float:
    return number(quantity, model).value


def family(name: str, setting: str = "vanilla") -> str:
    """Our family label (``vit``) and setting as the paper's row (``ViT-B/16-SAM`` for ``sam``)."""
    return FAMILY[name] + ("-SAM" if setting == "sam" else "")


def drop(model: str) -> float:
    """SAM's relative drop of lambda_max, 1 - SAM / AdamW (0.97 for ViT-B/16)."""
    return 1 - value("lambda_max", f"{model}-SAM") / value("lambda_max", model)


# ---- the short paper side of one comparison "A > B", as claims.json carries it per test ----

NOT_RETRIEVED = "not retrieved"  # the paper's table exists but its cells were not read (Table 4)
QUALITATIVE = "qualitative"  # the paper says it in words or a figure, without a number to compare


def gains(a: str, b: str) -> str:
    """SAM's top-1 gain of two families: ``+11.0 vs +5.3``."""
    return f"{value('top-1 gain', FAMILY[a]):+.1f} vs {value('top-1 gain', FAMILY[b]):+.1f}"


def drops(a: str, b: str) -> str:
    """SAM's relative lambda_max drop of two families: ``97% vs 77%``."""
    return f"{drop(FAMILY[a]):.0%} vs {drop(FAMILY[b]):.0%}"


def top1(a: str, a_setting: str, b: str, b_setting: str) -> str:
    """Top-1 of two (family, setting) rows: ``79.9 vs 78.5``."""
    return f"{value('top-1', family(a, a_setting))} vs {value('top-1', family(b, b_setting))}"


def kappas(a: str, b: str) -> str:
    """The NTK condition numbers of two families at initialisation: ``6207 vs 2802``."""
    return f"{value('NTK kappa', FAMILY[a]):.0f} vs {value('NTK kappa', FAMILY[b]):.0f}"


def corrupted_vs_clean(model: str) -> str:
    """SAM's ImageNet-C gain against its clean gain: ``+9.9 vs +5.3``."""
    return f"{value('ImageNet-C gain', FAMILY[model]):+.1f} vs {value('top-1 gain', FAMILY[model]):+.1f}"


def noise_gain() -> str:
    """SAM's gain at 80% label noise (Foret et al.'s ResNet-32 on CIFAR-10, the one value for every model)."""
    key = "test accuracy at 80% label noise"
    return f"{value(key, 'ResNet-32-SAM') - value(key, 'ResNet-32'):+.1f} at 80%"


# ---- a claim's paper line: the numbers it rests on, with the table they come from ----

def _pairs(quantity: str, fmt: str, models: tuple[str, ...]) -> str:
    return ", ".join(f"{FAMILY[m]} {value(quantity, FAMILY[m]):{fmt}}" for m in models)


def _lambda(model: str) -> str:
    return f"{model} {value('lambda_max', model)} -> {value('lambda_max', model + '-SAM')} ({-drop(model):.0%})"


def _sam_vs(vit: str, resnet: str) -> str:
    return f"{vit}-SAM {value('top-1', vit + '-SAM')} vs {resnet} {value('top-1', resnet)}"


TEXT: dict[str, str] = {
    "gain_by_family": f"ImageNet top-1 gain: {_pairs('top-1 gain', '+.1f', ('mixer', 'vit', 'resnet'))} "
                      f"({CHEN} Table 2)",
    "lambda_max_by_family": "lambda_max: " + ", ".join(_lambda(FAMILY[m]) for m in ("vit", "mixer", "resnet"))
                            + f" ({CHEN} Table 1)",
    "vit_sam_vs_resnet": f"{_sam_vs('ViT-B/16', 'ResNet-152')} (60M); {_sam_vs('ViT-S/16', 'ResNet-50')} "
                          f"({CHEN} Tables 1-2)",
    "data_efficiency": f"ImageNet 1/10 to full x {{vanilla, SAM, AUG, SAM+AUG}} ({CHEN} Table 4; cell values "
                       "not retrieved)",
    "sparsity_first_block": f"Mixer-SAM's first blocks much sparser; ViT's first layer about 10% active ({CHEN} "
                            "Sec. 4.3)",
    "ntk_order": f"kappa: {_pairs('NTK kappa', '', ('resnet', 'vit', 'mixer'))} ({CHEN} Table 1)",
    "corruption_gain": f"ViT-B/16 {value('ImageNet-C gain', 'ViT-B/16'):+.1f} on ImageNet-C vs "
                       f"{value('top-1 gain', 'ViT-B/16'):+.1f} clean; Mixer-B/16 "
                       f"{corrupted_vs_clean('mixer')} ({CHEN} Table 2)",
    "noise_gain": f"ResNet-32, CIFAR-10, 80% noise: SAM {value('test accuracy at 80% label noise', 'ResNet-32-SAM')} "
                  f"vs SGD {value('test accuracy at 80% label noise', 'ResNet-32')} ({FORET})",
    "gain_vs_model": f"ViT-S/16 {value('top-1 gain', 'ViT-S/16'):+.1f} vs ResNet-50 "
                    f"{value('top-1 gain', 'ResNet-50'):+.1f}; ViT-B/16 {value('top-1 gain', 'ViT-B/16'):+.1f} vs "
                    f"ResNet-152 {value('top-1 gain', 'ResNet-152'):+.1f} ({CHEN} Table 2)",
    "gain_vs_data": f"ViT-B/16 {value('top-1 gain', 'ViT-B/16'):+.1f} vs ResNet-152 "
                    f"{value('top-1 gain', 'ResNet-152'):+.1f} on ImageNet; the gain grows as data shrinks ({CHEN} "
                    "Tables 2, 4)",
    "sharpness_vs_data": f"lambda_max with AdamW: ViT-B/16 {value('lambda_max', 'ViT-B/16')}, ResNet-152 "
                            f"{value('lambda_max', 'ResNet-152')} on ImageNet ({CHEN} Table 1)",
}


def reference_row(name: str, setting: str) -> str:
    """The paper's numbers for a report row of family ``name`` at ``setting`` (vanilla or sam): top-1, lambda_max
    and the NTK kappa at initialisation (the same for both settings); "" where the paper has no such row."""
    if name not in FAMILY or setting not in ("vanilla", "sam"):
        return ""
    row = family(name, setting)
    return (f"{FAMILY[name]}: top-1 {value('top-1', row)}, lambda_max {value('lambda_max', row)}, NTK kappa "
            f"{value('NTK kappa', FAMILY[name])}")
