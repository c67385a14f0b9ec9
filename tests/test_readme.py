"""The README's library example runs as written (up to the whole-run lines, which train for an hour)."""

import re
from pathlib import Path

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
