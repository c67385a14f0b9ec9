"""Structured pruning: what is cut is really gone (parameters and FLOPs), the cut model computes what the original
computes with the removed units' outgoing weights zeroed, units that never fire cost nothing to remove, the activity
ranking agrees with the sparsity analysis, and a pruned run directory is a run like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import FAST, TINY
from torch import nn

from sharpvision import config, models
from sharpvision.analysis import active_neuron_fraction
from sharpvision.analysis.sparsity import unit_activity
from sharpvision.cli import main
from sharpvision.commands.prune import PruneError, prune_run
from sharpvision.evaluate.run import evaluate_run
from sharpvision.flops import forward_flops
from sharpvision.models.prune import keep_top, magnitude_scores, prunable, shrink, shrink_to
from sharpvision.train import train

MICRO = ["vit_micro", "mixer_micro", "resnet_micro", "convnext_micro"]
EXPECTED = {"vit_micro": ("blocks.0.mlp", 4), "mixer_micro": ("blocks.0.mlp_tokens", 8),
            "resnet_micro": ("layer1.0.conv1", 4), "convnext_micro": ("stages.0.blocks.0.mlp", 5)}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, img_size=28, in_chans=1).eval()
    for module in model.modules():  # BatchNorm with non-trivial statistics, so slicing them is tested
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def random_keep(model: nn.Module, share: float = 0.5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {n: torch.randperm(w.size, generator=gen)[:max(1, int(share * w.size))].sort().values
            for n, w in prunable(model).items()}


@pytest.mark.parametrize("name", MICRO)
def test_the_widths_of_each_family_are_found(name: str) -> None:
    widths = prunable(build(name))
    first, count = EXPECTED[name]
    assert next(iter(widths)) == first and len(widths) == count


@pytest.mark.parametrize("name", MICRO)
def test_a_cut_model_equals_the_original_with_the_cut_units_silenced(name: str) -> None:
    """The independent computation: the unpruned model whose removed units' outgoing weights are zero."""
    model = build(name)
    keep = random_keep(model)
    silenced = build(name)
    with torch.no_grad():
        for n, w in prunable(silenced).items():
            dropped = torch.ones(w.size, dtype=torch.bool)
            dropped[keep[n]] = False
            silenced.get_submodule(w.consumer).weight[:, dropped] = 0
    cut = shrink(model, keep)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), silenced(x), rtol=1e-4, atol=1e-5)
    example = torch.zeros(1, 1, 28, 28)
    assert sum(p.numel() for p in cut.parameters()) < sum(p.numel() for p in silenced.parameters())
    assert forward_flops(cut, example) < forward_flops(silenced, example)


@pytest.mark.parametrize("name", MICRO)
def test_a_recipe_with_widths_rebuilds_the_cut_shapes(name: str) -> None:
    cut = shrink(build(name), random_keep(build(name), 0.3))
    widths = {n: w.size for n, w in prunable(cut).items()}
    rebuilt = shrink_to(models.create(name, num_classes=10, img_size=28, in_chans=1), widths)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in cut.state_dict().items()}
    with pytest.raises(config.ConfigError, match="model.widths: nope not prunable"):
        shrink_to(models.create(name, num_classes=10, img_size=28, in_chans=1), {"nope": 3})


def test_units_that_never_fire_are_removed_first_and_for_free() -> None:
    """A ResNet channel whose BatchNorm output is always negative is 0 after ReLU: removing it changes nothing."""
    model = build("resnet_micro")
    dead = {}
    with torch.no_grad():
        for n, w in prunable(model).items():
            bn = model.get_submodule(w.producers[1])
            dead[n] = torch.arange(0, w.size, 4)  # a quarter of every width
            bn.bias += 2.0  # the others fire somewhere
            bn.bias[dead[n]] = -1e4
    x = torch.randn(16, 1, 28, 28)
    units = {n: (w.act, w.unit_dim) for n, w in prunable(model).items()}
    activity = unit_activity(model, [(x, torch.zeros(16))], units)
    keep = keep_top(activity, 0.25, tiebreak=magnitude_scores(model))
    for n in keep:
        assert set(keep[n].tolist()).isdisjoint(dead[n].tolist())
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(shrink(model, keep)(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vit_micro", "mixer_micro"])
def test_unit_activity_averages_to_the_sparsity_analysis(name: str) -> None:
    model = build(name)
    data = [(torch.randn(8, 1, 28, 28), torch.zeros(8))]
    widths = prunable(model)
    activity = unit_activity(model, data, {n: (w.act, w.unit_dim) for n, w in widths.items()})
    per_layer = active_neuron_fraction(model, data)["per_layer"]
    for n, w in widths.items():
        assert activity[n].shape == (w.size,)
        assert activity[n].mean().item() == pytest.approx(per_layer[w.act], abs=1e-6)


def test_keep_top_keeps_the_highest_and_breaks_ties_by_the_second_score() -> None:
    scores = {"w": torch.tensor([0.5, 0.0, 0.0, 0.9, 0.0])}
    tiebreak = {"w": torch.tensor([0.0, 3.0, 1.0, 0.0, 2.0])}
    assert keep_top(scores, 0.4, tiebreak)["w"].tolist() == [0, 1, 3]  # 0.9, 0.5, then the largest tie
    assert keep_top(scores, 0.99)["w"].tolist() == [3]  # at least one unit stays


@pytest.mark.needs_fmnist
def test_a_pruned_run_is_a_smaller_run_that_eval_loads_and_fine_tunes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "run"
    train(config.load(TINY, [*FAST, "schedule.epochs=1", "optim.sam=false"]), source, progress=False)
    rc = main(["prune", str(source), "--amount", "0.5", "--sample", "64", "--out", str(tmp_path / "p"),
               "--finetune-epochs", "1", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["params"] < summary["params_before"] and summary["flops"] < summary["flops_before"]
    assert summary["widths"]["blocks.0.mlp"] == [96, 192]
    assert config.load(tmp_path / "p" / "config.yaml").model.widths["blocks.3.mlp"] == 96
    assert evaluate_run(tmp_path / "p")["test_accuracy"] == summary["test_accuracy"]  # the recipe rebuilds it
    assert (tmp_path / "p" / "finetune" / "summary.json").is_file() and "test_accuracy" in summary["finetune"]
    for amount in (0.0, 1.0, -0.5):
        with pytest.raises(PruneError, match="--amount"):
            prune_run(source, tmp_path / "bad", amount)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(PruneError, match="already exists"):
        prune_run(source, tmp_path / "p", 0.5)
