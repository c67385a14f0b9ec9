"""A user's own images, end to end: the commands of docs/training.md's "Your own images" run as written on a few
generated class folders (train -> eval -> corruptions), and the model learns them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sharpvision import config
from sharpvision.cli import main

DOCS = Path(__file__).parents[1] / "docs" / "training.md"
SHAPES = ("circle", "square", "stripes")


def documented_commands() -> list[list[str]]:
    """The ``sharpvision ...`` lines of the section's command block, as argv."""
    section = DOCS.read_text().split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S)[1]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("sharpvision ")]


def draw(shape: str, rng: np.random.Generator, side: int = 40) -> Image.Image:
    """One RGB image: a shape of random size and place, in its class's main colour channel, on a noisy
    background."""
    yy, xx = np.mgrid[:side, :side]
    cy, cx, r = rng.uniform(12, 28), rng.uniform(12, 28), rng.uniform(6, 11)
    if shape == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    elif shape == "square":
        mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
    else:
        mask = (xx // 4) % 2 == 0
    image = rng.uniform(0, 0.3, (side, side, 3))
    colour = rng.uniform(0.2, 0.5, 3)
    colour[SHAPES.index(shape)] = rng.uniform(0.7, 1.0)
    image[mask] = colour
    return Image.fromarray((255 * image).astype(np.uint8))


def image_folders(root: Path, train: int = 32, val: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for shape in SHAPES:
            (root / split / shape).mkdir(parents=True)
            for i in range(n):
                draw(shape, rng).save(root / split / shape / f"{i:03d}.png")
    return root


@pytest.mark.usefixtures("one_thread")
def test_the_documented_image_folder_commands_train_and_evaluate(tmp_path: Path, monkeypatch, capsys) -> None:
    train, evaluate, corruptions, train_sam = documented_commands()
    monkeypatch.chdir(tmp_path)
    image_folders(tmp_path / "my_images")
    assert main(train + ["--quiet"]) == 0
    summary = json.loads((tmp_path / "runs" / "my_images" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8  # three classes: chance is a third
    capsys.readouterr()
    assert main(evaluate) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["n"] == 30 and shown["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert main(corruptions) == 0
    result = json.loads((tmp_path / "runs" / "my_images" / "eval" / "corruptions.json").read_text())
    assert result["table"] == "cifar" and list(result["accuracy"]["gaussian_noise"]) == ["1", "3", "5"]
    assert len(result["accuracy"]) == 7 and result["n"] == 30
    # the SAM twin differs in optim.sam only (its training costs twice the plain one's: loaded, not trained here)
    plain, sam = (config.load(argv[1], [a for a in argv[2:] if "=" in a]) for argv in (train, train_sam))
    assert sam.optim.sam and not plain.optim.sam and sam.data == plain.data
