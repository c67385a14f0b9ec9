"""The README is a first screen, and the Python examples in README.md and docs/*.md run as written (a tiny trained run
stands in for runs/vit_sam)."""

import ast
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# one marker per example; a test below runs the block that holds it
LIBRARY, ANALYSIS_FUNCTIONS, ANALYZE = "sv.optim.SAM(", "A.hessian_eigenvalues(", "analyze(load_subject("
EXPERIMENTS = "experiments.load_suite("
CLAIMS = "claims.evaluate("
CORRUPTIONS = "corruption_accuracy(model, batches"
MNIST_C = "mnist_c_accuracy(model, batches"
FINETUNE = "finetune_recipe(source,"
PRUNE = "keep_top(activity, 0.5"


def python_blocks() -> list[tuple[Path, str]]:
    return [(page, code) for page in PAGES for code in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def example(marker: str) -> tuple[Path, str]:
    (found,) = [(page, code) for page, code in python_blocks() if marker in code]
    return found


def run(code: str, page: Path) -> dict:
    scope: dict = {}
    exec(compile(code, str(page), "exec"), scope)
    return scope


def test_every_python_example_is_run_by_a_test() -> None:
    """A new ```python block in the docs needs a test here (and its marker in the list above)."""
    markers = (LIBRARY, ANALYSIS_FUNCTIONS, ANALYZE, EXPERIMENTS, CLAIMS, CORRUPTIONS, MNIST_C, FINETUNE,
               PRUNE)
    for page, code in python_blocks():
        assert sum(m in code for m in markers) == 1, (page, code[:200])


def test_library_example_runs() -> None:
    """Everything up to the whole-run lines (their recipe is checked below, without training for minutes)."""
    page, block = example(LIBRARY)
    code, _, whole_runs = block.partition("# whole runs")
    assert "sv.train.train(cfg" in whole_runs and "sv.config.load(" in whole_runs
    scope = run(code, page)
    loss, logits, opt, sched = scope["loss"], scope["logits"], scope["opt"], scope["sched"]
    assert torch.isfinite(loss) and logits.shape == (8, 10)
    assert not opt.perturbed and opt.base_optimizer.state  # stepped, weights restored
    assert sched.optimizer is opt and sched.last_epoch == 3  # the scheduler drives the optimizer that stepped


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sharpvision import config
    from sharpvision.train import train
    out = tmp_path_factory.mktemp("readme") / "run"
    train(config.load("tiny.yaml", ["data.subset_train=128", "data.subset_test=64", "train.max_steps_per_epoch=2",
                                    "schedule.epochs=1"]), out, progress=False)
    return out


def run_replacing(marker: str, line: str, replacement: str, *more: tuple[str, str]) -> dict:
    """Run the example holding ``marker`` with its ``line`` (which must be there as written) replaced, and each
    further (text, replacement) pair of ``more`` likewise."""
    page, block = example(marker)
    for old, new in ((line, replacement), *more):
        assert old in block, old
        block = block.replace(old, new)
    return run(block, page)


@pytest.mark.needs_fmnist
def test_analysis_functions_example_runs(tiny_run: Path) -> None:
    """On the tiny run and 64 examples instead of runs/vit_sam and 2048, and the trace and density with fewer
    products (9 and one run of 10 instead of 99 and three of 50: they were most of this test's minute)."""
    scope = run_replacing(ANALYSIS_FUNCTIONS, 'run_dir, n = "runs/vit_sam", 2048',
                          f"run_dir, n = {str(tiny_run)!r}, 64", ('samples=99', 'samples=9'),
                          ('iters=50, runs=3', 'iters=10, runs=1'))
    assert len(scope["data"]) == 1 and len(scope["data"][0][1]) == 64
    assert len(scope["top"]["eigenvalues"]) == 3 and scope["kappa"]["n"] == 64
    assert scope["plane"]["center_loss"] == pytest.approx(scope["flat"]["loss"], rel=1e-5)
    assert scope["maps"]["rollout"].shape[0] == 8


@pytest.mark.needs_fmnist
def test_analyze_example_runs(tiny_run: Path) -> None:
    """The call as written, on the tiny run and with two cheap pieces (the Hessian's are tested in test_analyze)."""
    scope = run_replacing(ANALYZE, 'run_dir, what = "runs/vit_sam", ["hessian", "trace"]',
                          f"run_dir, what = {str(tiny_run)!r}, ['norms', 'sparsity']")
    assert set(scope["results"]) == {"norms", "sparsity"}
    assert (tiny_run / "analysis" / "norms.json").is_file() and (tiny_run / "analysis" / "sparsity.json").is_file()


def test_experiments_example_runs() -> None:
    """Loading a shipped suite and selecting cells, as written (the run itself is test_experiments' to test)."""
    page, block = example(EXPERIMENTS)
    scope = run("from pathlib import Path\n" + block, page)
    assert scope["suite"].name == "paper-tiny" and scope["cells"]
    assert all(cell.label("setting") == "sam" for cell in scope["cells"])


def test_claims_example_runs() -> None:
    """On the committed regime pilot: its axes are not the claims' labels, so every claim says what is missing."""
    from sharpvision.experiments import claims
    page, block = example(CLAIMS)
    verdicts = run(block, page)["verdicts"]
    assert [c["id"] for c in verdicts["claims"]] == [c.id for c in claims.CLAIMS]
    assert all(c["verdict"] == "not measured" and c["why"] for c in verdicts["claims"])


def test_corruption_example_runs() -> None:
    page, code = example(CORRUPTIONS)
    scope = run(code, page)
    foggy, result = scope["foggy"], scope["result"]
    assert foggy.shape == (8, 1, 28, 28) and 0 <= foggy.min() and foggy.max() <= 1
    assert not torch.equal(foggy, scope["images"])
    assert list(result["accuracy"]) == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]  # the group, then fog
    assert result["n"] == 8 and all(list(per) == [1, 5] for per in result["accuracy"].values())


def test_mnist_c_example_runs() -> None:
    page, code = example(MNIST_C)
    scope = run(code, page)
    edges, result = scope["edges"], scope["result"]
    assert edges.shape == (8, 1, 28, 28) and set(edges.unique().tolist()) <= {0.0, 1.0}
    assert list(result["accuracy"]) == ["rotate", "zigzag"] and result["n"] == 8


@pytest.mark.needs_fmnist
def test_finetune_example_runs(tiny_run: Path, tmp_path: Path) -> None:
    """On the tiny run, two steps of a linear probe on the digits."""
    page, block = example(FINETUNE)
    paths = 'source, out = "runs/vit_fmnist", "runs/vit_probe"'
    short = 'overrides=["data.img_size=28"]'
    assert paths in block and short in block
    code = block.replace(paths, f"source, out = {str(tiny_run)!r}, {str(tmp_path / 'probe')!r}").replace(
        short, 'overrides=["data.img_size=28", "schedule.epochs=1", "train.max_steps_per_epoch=2", '
               '"data.subset_test=64"]')
    scope = run(code, page)
    assert scope["summary"]["finetune"]["mode"] == "linear" and scope["summary"]["test_accuracy"] >= 0
    assert scope["adapted"]["new"] == ["head.weight", "head.bias"] and scope["trainable"] == ["head.weight",
                                                                                               "head.bias"]


def test_prune_example_runs() -> None:
    """On an untrained vit_micro and one batch of 4 images (the example's ``model`` and ``batches``)."""
    page, block = example(PRUNE)
    setup = ("import torch\nfrom sharpvision import models\n"
             "model = models.create('vit_micro', num_classes=10, img_size=28, in_chans=1)\n"
             "batches = [(torch.randn(4, 1, 28, 28), torch.zeros(4))]\n")
    scope = run(setup + block, page)
    assert [len(v) for v in scope["keep"].values()] == [96] * 4  # half of each hidden width of 192
    assert scope["small"].blocks[0].mlp.fc1.out_features == 96


README = ROOT / "README.md"


def test_readme_is_a_first_screen() -> None:
    """Under 250 lines, in the order a newcomer needs: what it is, the two commands, what it shows (linking the
    findings), the command line, the library, the links."""
    text = README.read_text()
    assert len(text.splitlines()) < 250
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Try it", "What it shows", "Command line", "Library", "Documentation"]
    intro = text.split("\n## ")[0].split("\n\n", 1)[1]
    assert len(intro.strip().splitlines()) <= 3
    shows = text.split("## What it shows")[1].split("\n## ")[0].strip().split("\n\n")
    assert "(docs/findings.md)" in shows[0] and len(shows[0].splitlines()) <= 2  # where every figure is
    findings = re.split(r"^- ", shows[1], flags=re.M)[1:]  # short: one item per finding, each a few lines
    assert 3 <= len(findings) <= 5 and all(len(f.splitlines()) <= 5 for f in findings)
    assert [f.split(":**")[0].split("**")[1] for f in findings][-1] == "Open"  # what is open, said last
    assert "report/report.md)" in shows[1] and "sharpvision report" in shows[2]  # the reports, and how to make one


def test_the_claims_table_fits_120_columns_and_prints_no_nonfinite_number() -> None:
    findings = README.parent / "docs" / "findings.md"
    block = re.search(r"^<!-- figures: paper_cpu -->\n(.*?)^<!-- /figures: paper_cpu -->", findings.read_text(),
                      re.S | re.M)[1]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    assert len(rows) > 10
    assert [line for line in rows if len(line) > 120] == []
    assert not re.search(r"\b(inf|nan)\b", block, re.I), "a non-finite number printed: say 'not measured'"


def test_library_example_trains_a_recipe_sized_for_a_cpu() -> None:
    """The example's whole run must end in minutes on a laptop: no bigger than micro.yaml's own run (vit_micro on
    12,000 images for 8 epochs, about 3 minutes on 2 cores), counted as parameters x images x epochs x passes per
    step, and no more loader workers than a small machine has."""
    from sharpvision import config, models
    _, block = example(LIBRARY)
    call = re.search(r"sv\.config\.load\((.*)\)\n", block.partition("# whole runs")[2])[1]
    cfg = config.load(*ast.literal_eval(f"({call},)"))
    micro = config.load("micro.yaml")

    def cost(c: config.Config) -> float:
        model = models.create(c.model.name, num_classes=10, img_size=28, in_chans=1)
        params = sum(p.numel() for p in model.parameters())
        images = min(round(60_000 * c.data.fraction), c.data.subset_train or 60_000)
        return params * images * c.schedule.epochs * (2 if c.optim.sam else 1)

    assert cost(cfg) <= cost(micro) and cfg.data.num_workers <= 2
    assert cfg.data.dataset == "fashion_mnist"  # the data make setup installs
