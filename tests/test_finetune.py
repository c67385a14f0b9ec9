"""Fine-tuning and linear probes: sources read and fitted (new head, resampled position embeddings, adapted stem
channels), a frozen backbone that stays frozen, a fine-tune that resumes exactly, the digits data and class splits,
and bad sources refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import FAST, TINY
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from sharpvision import checkpoint as ckpt
from sharpvision import config, models
from sharpvision.cli import main
from sharpvision.config import FinetuneConfig
from sharpvision.data import build_datasets
from sharpvision.data.datasets import _digits, select_classes
from sharpvision.models.finetune import FinetuneError, fit_source, freeze_backbone, read_source
from sharpvision.runtime import seed_everything
from sharpvision.train import finetune_recipe, train

pytestmark = pytest.mark.needs_fmnist
SOURCE_RUN = [*FAST, "schedule.epochs=1", "data.classes=[0,1,2,3,4]", "train.ema_decay=0.9"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit_micro trained one short epoch on five Fashion-MNIST classes: the source of the fine-tunes here."""
    out = tmp_path_factory.mktemp("source") / "vit_src"
    train(config.load(TINY, SOURCE_RUN), out, progress=False)
    return out


def weights_of(run: Path) -> dict[str, torch.Tensor]:
    return read_source(run).weights


def test_digits_are_the_real_bundled_images_with_a_fixed_stratified_test_third() -> None:
    src = _digits()
    assert (len(src.train_labels), len(src.test_labels)) == (1198, 599)  # 1,797 in all
    assert src.train_images.shape[1:] == (1, 8, 8) and src.train_images.dtype == torch.uint8
    assert int(src.train_images.max()) == 255  # 16 grey levels scaled to 0-255
    per_class = torch.bincount(torch.cat([src.train_labels, src.test_labels]), minlength=10)
    assert torch.equal(torch.bincount(src.test_labels, minlength=10), (per_class / 3).round().long())  # stratified
    again = _digits()
    assert torch.equal(again.test_images, src.test_images)  # the same test set for every run
    train_pixels = src.train_images.float() / 255
    assert abs(train_pixels.mean().item() - src.mean[0]) < 1e-3 and abs(train_pixels.std().item() - src.std[0]) < 1e-3


def test_a_class_split_keeps_only_those_classes_relabelled_in_the_order_given() -> None:
    src = _digits()
    part = select_classes(src, (7, 2, 9))
    assert part.num_classes == 3
    for new, old in enumerate((7, 2, 9)):
        assert torch.equal(part.train_images[part.train_labels == new], src.train_images[src.train_labels == old])
        assert torch.equal(part.test_images[part.test_labels == new], src.test_images[src.test_labels == old])
    with pytest.raises(Exception, match=r"data.classes: \[12\] out of range"):
        select_classes(src, (1, 12))
    with pytest.raises(config.ConfigError, match="data.classes"):
        config.load(TINY, ["data.classes=[3,3]"])


def test_a_new_head_is_fresh_and_every_other_tensor_is_the_sources(source_run: Path) -> None:
    src = read_source(source_run)
    assert src.model_name == "vit_micro" and src.info["epoch"] == 1 and len(src.info["sha256"]) == 64
    model = models.create("vit_micro", num_classes=7, img_size=28, in_chans=1)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = fit_source(model, src, FinetuneConfig(source=str(source_run)))
    assert adapted["new"] == ["head.weight", "head.bias"]
    for key, value in model.state_dict().items():
        expected = fresh[key] if key.startswith("head.") else src.weights[key]
        assert torch.equal(value, expected), key


def test_the_sources_ema_weights_start_a_fine_tune_as_a_plain_model(source_run: Path) -> None:
    src, saved = read_source(source_run, ema=True), ckpt.load(source_run)
    assert src.weights.keys() == saved.model.keys() and src.info["ema"]  # the EMA's, without AveragedModel's wrapping
    assert all(torch.equal(v, saved.ema[f"module.{k}"]) for k, v in src.weights.items())
    assert not torch.equal(src.weights["head.weight"], saved.model["head.weight"])
    model = models.create("vit_micro", num_classes=5, img_size=28, in_chans=1)
    fit_source(model, src, FinetuneConfig(source=str(source_run), head="keep", ema=True))
    assert torch.equal(model.head.weight, saved.ema["module.head.weight"])


def test_keeping_the_head_needs_it_to_fit(source_run: Path) -> None:
    src = read_source(source_run)
    same = models.create("vit_micro", num_classes=5, img_size=28, in_chans=1)
    fit_source(same, src, FinetuneConfig(source=str(source_run), head="keep"))
    assert torch.equal(same.head.weight, src.weights["head.weight"])
    other = models.create("vit_micro", num_classes=7, img_size=28, in_chans=1)
    with pytest.raises(FinetuneError, match="finetune.head: 'keep' needs .* use finetune.head=new"):
        fit_source(other, src, FinetuneConfig(source=str(source_run), head="keep"))


def test_position_embeddings_are_resampled_to_the_new_grid_as_timm_does(source_run: Path) -> None:
    src = read_source(source_run)
    model = models.create("vit_micro", num_classes=10, img_size=16, in_chans=1)  # 7 x 7 patches -> 4 x 4
    adapted = fit_source(model, src, FinetuneConfig(source=str(source_run)))
    assert adapted["resampled"] == ["pos_embed"]
    expected = resample_abs_pos_embed(src.weights["pos_embed"], [4, 4], num_prefix_tokens=1)
    assert model.pos_embed.shape == (1, 17, 96)
    assert torch.equal(model.pos_embed.detach(), expected)
    assert torch.equal(model.pos_embed[:, 0], src.weights["pos_embed"][:, 0])  # the class token's is kept


@pytest.mark.parametrize("name", ["resnet_micro", "vit_micro"])
def test_stem_channels_adapt_so_grey_images_give_the_same_logits_in_rgb(name: str, tmp_path: Path) -> None:
    """1 -> 3: the filter repeated over three channels, divided by 3: a grey image copied to RGB gives the source's
    logits exactly (up to float rounding). 3 -> 1: the channels summed: the same identity the other way."""
    torch.manual_seed(0)
    grey = models.create(name, num_classes=10, img_size=28, in_chans=1).eval()
    file = tmp_path / "grey.safetensors"
    save_file({k: v.contiguous() for k, v in grey.state_dict().items()}, str(file))
    rgb = models.create(name, num_classes=10, img_size=28, in_chans=3).eval()
    adapted = fit_source(rgb, read_source(file), FinetuneConfig(source=str(file), head="keep"))
    assert len(adapted["channels"]) == 1
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), grey(x), rtol=1e-4, atol=1e-4)
    back_file = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(back_file))
    back = models.create(name, num_classes=10, img_size=28, in_chans=1).eval()
    fit_source(back, read_source(back_file), FinetuneConfig(source=str(back_file), head="keep"))
    with torch.no_grad():
        torch.testing.assert_close(back(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


def test_a_frozen_backbone_stays_in_eval_mode_and_only_the_classifier_learns() -> None:
    model = models.create("resnet_micro", num_classes=10, img_size=28, in_chans=1)
    trainable = freeze_backbone(model)
    assert trainable == ["fc.weight", "fc.bias"]
    model.train()
    bn = model.bn1
    assert not bn.training and model.fc.training
    before = bn.running_mean.clone()
    model(torch.randn(8, 1, 28, 28))
    assert torch.equal(bn.running_mean, before)  # the source's statistics, not this batch's


def test_a_linear_probe_changes_the_classifier_only(source_run: Path, tmp_path: Path) -> None:
    cfg = finetune_recipe(source_run, "fashion_mnist", "linear", overrides=[*FAST, "schedule.epochs=1",
                                                                            "data.classes=[5,6,7,8,9]"])
    assert cfg.finetune.mode == "linear" and cfg.name == "vit_src-probe-fashion_mnist"
    summary = train(cfg, tmp_path / "probe", progress=False)
    assert summary["finetune"]["trainable_params"] == 96 * 5 + 5
    after, before = weights_of(tmp_path / "probe"), weights_of(source_run)
    seed_everything(cfg.seed)  # the run's fresh head, drawn as build_session draws it
    initial = models.from_config(cfg, build_datasets(cfg.data)).head.weight
    assert not torch.equal(after["head.weight"], initial)
    for key in before:
        if not key.startswith("head."):
            assert torch.equal(after[key], before[key]), key


def test_a_fine_tune_resumes_exactly_and_every_checkpoint_names_its_source(source_run: Path, tmp_path: Path) -> None:
    cfg = finetune_recipe(source_run, "digits", overrides=["data.img_size=28", "train.max_steps_per_epoch=3",
                                                           "data.subset_test=128", "schedule.epochs=2"])
    whole = train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "cut", stop_after_epoch=1, progress=False)
    cut = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert cut["test_accuracy"] == whole["test_accuracy"]
    a, b = weights_of(tmp_path / "whole"), weights_of(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    manifest = json.loads((tmp_path / "cut" / "checkpoints" / "step_00000006" / "manifest.json").read_text())
    assert manifest["finetune"]["path"] == str((source_run / "checkpoints" / "step_00000003").resolve())
    assert manifest["finetune"]["sha256"] == read_source(source_run).info["sha256"]
    assert whole["finetune"]["source"]["model"] == "vit_micro"


def test_a_timm_style_weights_file_works_and_a_pickle_is_refused(source_run: Path, tmp_path: Path) -> None:
    """A .pth as timm writes them (``state_dict`` key, DDP's ``module.`` prefix) loads with weights_only; a file
    that would run code on load is refused."""
    weights = weights_of(source_run)
    pth = tmp_path / "vit.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}, pth)
    src = read_source(pth)
    assert src.model_name is None and set(src.weights) == set(weights)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": weights, "hook": print}, evil)
    with pytest.raises(FinetuneError, match="evil.pth: cannot be read as weights"):
        read_source(evil)


@pytest.mark.parametrize("args, culprits", [
    (["{missing}", "--data", "digits"], ["finetune source", "no such file"]),
    (["{run}", "model.name=resnet_micro"], ["it trained 'vit_micro' but model.name is 'resnet_micro'"]),
    (["{file}"], ["a weights file does not say which model it is", "model.name="]),
    (["{run}", "finetune.head=keep"], ["finetune.head: 'keep' needs"]),
], ids=["missing", "other-model", "file-without-model", "keep-head-mismatch"])
def test_a_bad_source_is_one_line_and_nothing_is_written(args: list[str], culprits: list[str], source_run: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(file))
    paths = {"missing": tmp_path / "nope", "run": source_run, "file": file}
    argv = ["finetune", *[a.format(**paths) for a in args], "--out", str(tmp_path / "out" / "ft"), "--quiet",
            "data.classes=[5,6,7,8,9,0,1]", *FAST, "schedule.epochs=1"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for culprit in culprits:
        assert culprit in err, err
    assert not (tmp_path / "out").exists()
