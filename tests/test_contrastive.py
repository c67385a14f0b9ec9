"""Contrastive pre-training (task: contrastive): NT-Xent as cross-entropy on pair logits against a hand computation,
the pair targets, the two views, the kNN test figure, an exactly resumable SAM run, and the way on to a probe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import FAST, TINY

from sharpvision import config, models
from sharpvision.config import ConfigError, ContrastiveConfig, DataConfig
from sharpvision.data.transforms import TwoViews, contrastive_transform
from sharpvision.evaluate.knn import knn_accuracy
from sharpvision.models.contrastive import ContrastiveNet, pair_targets
from sharpvision.models.finetune import read_source
from sharpvision.train import finetune_recipe, train

RUN = [*FAST, "schedule.epochs=2", "task=contrastive", "train.eval_every=1"]


def net(temperature: float = 0.3) -> ContrastiveNet:
    torch.manual_seed(0)
    backbone = models.create("vit_micro", num_classes=0, img_size=28, in_chans=1)
    return ContrastiveNet(backbone, ContrastiveConfig(temperature=temperature)).eval()


def test_cross_entropy_on_the_pair_logits_is_nt_xent() -> None:
    """Against SimCLR's eq. 1 written out: -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over 2B."""
    model, t = net(0.3), 0.3
    x = torch.randn(3, 2, 1, 28, 28)
    with torch.no_grad():
        loss = F.cross_entropy(model(x), pair_targets(6))
    with torch.no_grad():
        z = F.normalize(model.proj(model.backbone(x.flatten(0, 1))), dim=1).double()
    expected = 0.0
    for i in range(6):
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(6) if k != i)
        expected -= math.log(math.exp(float(z[i] @ z[i ^ 1]) / t) / denominator)
    assert float(loss) == pytest.approx(expected / 6, rel=1e-5)


def test_the_positive_of_each_view_is_its_other_view() -> None:
    """Two identical views are each other's nearest (cosine 1): the pair targets point at them."""
    model = net()
    images = torch.randn(4, 1, 1, 28, 28)
    logits = model(images.repeat(1, 2, 1, 1, 1))
    assert logits.shape == (8, 8) and torch.isinf(logits.diagonal()).all()
    assert torch.equal(logits.argmax(1), pair_targets(8))
    assert model(images[:, 0]).shape == (4, 96)  # single images: the backbone's features


def test_two_views_are_two_draws_of_one_image() -> None:
    views = contrastive_transform(DataConfig(), 28, (0.286,), (0.353,), crop_min=0.2, jitter=0.4)
    assert isinstance(views, TwoViews)
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(0)
    pair = views(image)
    torch.manual_seed(0)
    assert pair.shape == (2, 1, 28, 28) and not torch.equal(pair[0], pair[1]) and torch.equal(views(image), pair)


def test_knn_accuracy_is_the_weighted_vote_by_hand() -> None:
    """Unit vectors at angles: a query at 46 degrees, class-0 neighbours at 40 and 41, a class-1 one at 48. The
    nearest is class 1; with all three voting, exp(cos / 0.07) gives class 0 1.89 times class 1's weight."""
    def at(*degrees: float) -> torch.Tensor:
        rad = torch.tensor(degrees) * math.pi / 180
        return torch.stack([rad.cos(), rad.sin()], 1)

    bank = [(at(40, 41, 48), torch.tensor([0, 0, 1]))]
    queries = [(at(46), torch.tensor([1]))]
    model, cpu = torch.nn.Identity(), torch.device("cpu")
    assert knn_accuracy(model, bank, queries, k=1, device=cpu)["correct"] == 1
    assert knn_accuracy(model, bank, queries, k=3, device=cpu)["correct"] == 0
    class0 = math.exp(math.cos(math.radians(6)) / 0.07) + math.exp(math.cos(math.radians(5)) / 0.07)
    assert class0 / math.exp(math.cos(math.radians(2)) / 0.07) == pytest.approx(1.888, abs=1e-3)


@pytest.mark.needs_fmnist
def test_a_contrastive_sam_run_resumes_exactly_and_a_probe_starts_from_its_backbone(tmp_path: Path) -> None:
    cfg = config.load(TINY, RUN)  # tiny.yaml trains with SAM
    whole = train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "cut", stop_after_epoch=1, progress=False)
    cut = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert "test_knn_accuracy" in whole and cut["test_knn_accuracy"] == whole["test_knn_accuracy"]
    a, b = read_source(tmp_path / "whole"), read_source(tmp_path / "cut")
    assert a.weights.keys() == b.weights.keys() and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert not any(k.startswith(("proj.", "backbone.")) for k in a.weights)  # the backbone, as a plain model
    probe = finetune_recipe(tmp_path / "whole", mode="linear", overrides=[*FAST, "schedule.epochs=1"])
    assert probe.task == "classify"
    summary = train(probe, tmp_path / "probe", progress=False)
    assert summary["finetune"]["trainable_params"] == 96 * 10 + 10


@pytest.mark.parametrize("override, culprit", [
    ("optim.m=16", "optim.m"), ("adv.method=pgd", "adv.method"), ("train.lambda_max_every=1",
                                                                  "train.lambda_max_every"),
    ("finetune.mode=linear", "finetune.mode"), ("contrastive.temperature=0", "contrastive.temperature")])
def test_what_contrastive_runs_cannot_do_is_refused_by_name(override: str, culprit: str) -> None:
    with pytest.raises(ConfigError, match=culprit):
        config.load(TINY, ["task=contrastive", override])


@pytest.mark.slow
@pytest.mark.needs_fmnist
def test_two_workers_with_gathered_negatives_reproduce_one_process(tmp_path: Path) -> None:
    """2 workers x 32 images, each scoring its views against all 128 gathered ones, step as one process with batch
    64 does: the gather's backward returns every worker's share of the gradient. The views are made deterministic
    (whole image, no jitter or flip) because each worker draws its own augmentation; plain SGD, because SAM's ascent
    under DDP is per worker by design (m-sharpness, as for classification), so it differs from one process."""
    from test_distributed import torchrun

    common = [*RUN, "data.subset_test=64", "train.device=cpu", "train.threads=1", "optim.name=sgd", "optim.lr=0.05",
              "optim.sam=false",
              "contrastive.crop_min=1.0", "contrastive.jitter=0", "data.hflip=false"]
    done = torchrun(2, "-m", "sharpvision", "train", str(TINY), "--out", str(tmp_path / "ddp"), "--quiet", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    single = train(config.load(TINY, common), tmp_path / "one", progress=False)
    a, b = read_source(tmp_path / "ddp").weights, read_source(tmp_path / "one").weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert single["workers"] == 1


def documented_contrastive_commands() -> list[list[str]]:
    """Each ``sharpvision train ... task=contrastive`` line of README.md and docs/transfer.md as argv, without its
    ``--out`` (the test's own folder goes there), each distinct command once."""
    root = Path(__file__).parents[1]
    commands = []
    for page in (root / "README.md", root / "docs" / "transfer.md"):
        for line in page.read_text().splitlines():
            if line.startswith("sharpvision train ") and "task=contrastive" in line:
                argv = line.split("#")[0].split()[1:]
                if "--out" in argv:
                    del argv[argv.index("--out"):argv.index("--out") + 2]
                commands += [argv] if argv not in commands else []
    assert commands, "no contrastive training command in README.md or docs/transfer.md"
    return commands


@pytest.mark.needs_fmnist
@pytest.mark.parametrize("argv", documented_contrastive_commands(), ids=" ".join)
def test_the_documented_contrastive_command_trains_to_a_finite_loss(argv: list[str], tmp_path: Path, capsys,
                                                                    one_thread) -> None:
    """The recipe the docs name (micro.yaml, which sets train.label_smoothing 0.1) as written: label smoothing has
    no meaning for NT-Xent (it would put weight on each view's masked -inf self-similarity, an infinite loss from
    the first step), so it is left out of the contrastive loss with a one-line note. Only the size is cut here."""
    from sharpvision.cli import main
    small = ["data.subset_train=256", "data.subset_test=128", "schedule.epochs=1", "schedule.warmup_epochs=0"]
    assert main([*argv, *small, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "train.label_smoothing" in line]
    assert len(notes) == 1 and "not applied" in notes[0], err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert math.isfinite(summary["train_loss"]) and summary["train_loss"] > 0
    assert math.isfinite(summary["test_knn_accuracy"])
