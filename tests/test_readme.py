"""The README's library example runs as written (up to the whole-run lines, which train for an hour)."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"


def test_readme_library_example_runs() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    code, _, whole_runs = block.partition("# whole runs")
    assert "sv.train.train(cfg" in whole_runs and "sv.config.load(" in whole_runs
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    loss, logits = scope["loss"], scope["logits"]
    assert torch.isfinite(loss) and logits.shape == (8, 10)
    assert not scope["opt"].perturbed and scope["opt"].base_optimizer.state  # stepped, weights restored


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="needs the Debian package dataset-fashion-mnist (make setup installs it)")
def test_readme_analysis_example_runs(tmp_path: Path) -> None:
    """The analysis example, on a tiny trained run instead of runs/vit_sam and 64 examples instead of 2048."""
    from sharpvision import config
    from sharpvision.train import train
    train(config.load(Path(__file__).parents[1] / "configs" / "tiny.yaml",
                      ["data.subset_train=128", "data.subset_test=64", "train.max_steps_per_epoch=2",
                       "schedule.epochs=1"]), tmp_path / "run", progress=False)
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "load_subject" in b)
    line = 'run_dir, n = "runs/vit_sam", 2048'
    assert line in block
    code = block.replace(line, f"run_dir, n = {str(tmp_path / 'run')!r}, 64")
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert len(scope["data"]) == 1 and len(scope["data"][0][1]) == 64
    assert len(scope["top"]["eigenvalues"]) == 3 and scope["kappa"]["n"] == 64
    assert scope["plane"]["center_loss"] == pytest.approx(scope["flat"]["loss"], rel=1e-5)
    assert scope["maps"]["rollout"].shape[0] == 8
