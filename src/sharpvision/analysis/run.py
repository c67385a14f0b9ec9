"""``sharpvision analyze``: loss-geometry measurements of a run directory or checkpoint, to JSON and PNG.

Everything is measured on a fixed, seeded sample of the *training* set, read without augmentation
(the training loss the optimizer saw; the labels are the ones it trained on, label noise included).
The NTK is measured at initialization: the model is rebuilt with the run's seed, as training built it.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sharpvision import config as svconfig
from sharpvision import data as svdata
from sharpvision import models
from sharpvision.analysis import attention, flatness, hessian, landscape, norms, ntk, plots, sparsity
from sharpvision.analysis.core import Batches, sample_batches
from sharpvision.config import ConfigError
from sharpvision.runs import open_run
from sharpvision.runtime import device_name


@dataclasses.dataclass
class Subject:
    """A trained model with what the measurements need: its data, its init, its recipe."""

    name: str
    cfg: svconfig.Config
    model: nn.Module
    init: nn.Module
    bundle: svdata.DataBundle
    device: torch.device
    epoch: int


def load_subject(target: str | Path) -> Subject:
    """The model of a run directory (its last checkpoint) or of a checkpoint file, in eval mode."""
    # every piece measures the classification loss or its classifier's blocks: a run without one is refused
    run = open_run(target, purpose="analyse", keep_init=True)  # init: rebuilt with the run's seed, as training did
    return Subject(run.name, run.cfg, run.model, run.init, run.bundle, run.rt.device, run.epoch)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the pieces measure (the ``sharpvision analyze`` flags of the same names)."""

    sample: int = 2048  # training examples in the fixed analysis sample
    batch_size: int = 256
    seed: int = 0  # of the sample and of the random vectors
    mode: str = "eval"  # model mode (BN, dropout) policy
    dtype: str = "float32"
    repeats: int = 1  # lambda_max on this many sample draws (spread)
    ntk_n: int = 128  # inputs in the NTK kernel
    landscape_sample: int = 512  # examples per landscape point
    landscape_steps: int = 11  # grid points per landscape axis
    trace_samples: int = 99  # Hutch++ matrix-vector products
    density_iters: int = 50  # Lanczos steps per SLQ run
    density_runs: int = 3  # SLQ runs (random start vectors)
    keep_graph: bool | None = None  # Hessian pieces: build the sample's gradient graph once (None: if one batch)


@dataclasses.dataclass
class Context:
    """What every piece measures on: the subject, its fixed sample, the settings."""

    subject: Subject
    data: Batches
    settings: Settings
    loss_fn: Callable[..., torch.Tensor] = nn.functional.cross_entropy

    @property
    def hessian_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return dict(mode=s.mode, dtype={"float32": torch.float32, "float64": torch.float64}[s.dtype],
                    keep_graph=s.keep_graph, seed=s.seed)


Figures = Callable[[dict[str, dict[str, Any]], Path], list[Path]]  # results by run -> the PNGs written in a folder


@dataclasses.dataclass(frozen=True)
class Piece:
    """One measurement: how to compute it on a subject, and how to draw one or several runs' results."""

    compute: Callable[[Context], dict[str, Any]]
    figures: Figures = lambda results, out: []  # noqa: E731
    compares: bool = True  # the figures can show several runs side by side


def _hessian(c: Context) -> dict[str, Any]:
    s, subject = c.settings, c.subject
    n = min(s.sample, len(subject.bundle.train))
    draws = [c.data] + [sample_batches(subject.bundle.train_plain, n, s.batch_size, s.seed + r, subject.device)
                        for r in range(1, s.repeats)]
    top = [hessian.hessian_eigenvalues(c.subject.model, c.loss_fn, d, k=1, **c.hessian_kwargs) for d in draws]
    blockwise = hessian.hessian_eigenvalues_per_block(c.subject.model, c.loss_fn, c.data, **c.hessian_kwargs)
    values = [t["eigenvalues"][0] for t in top]
    return {"lambda_max": values[0], "lambda_max_over_samples": values, "lambda_max_mean": statistics.fmean(values),
            "lambda_max_std": statistics.stdev(values) if len(values) > 1 else 0.0, "per_block": blockwise["blocks"],
            "settings": top[0]["settings"], "sample_seeds": list(range(s.seed, s.seed + s.repeats))}


def _sharpness(c: Context) -> dict[str, Any]:
    model, mode, seed = c.subject.model, c.settings.mode, c.settings.seed
    return {"sam": flatness.sam_sharpness(model, c.loss_fn, c.data, rho=c.subject.cfg.optim.rho or 0.05, mode=mode),
            "worst_case": flatness.worst_case_sharpness(model, c.loss_fn, c.data, seed=seed, mode=mode),
            "adaptive_worst_case": flatness.worst_case_sharpness(model, c.loss_fn, c.data, rho=0.5, adaptive=True,
                                                                 seed=seed, mode=mode)}


def _ntk(c: Context) -> dict[str, Any]:
    n = c.settings.ntk_n
    inputs = torch.cat([x for x, _ in c.data])[:n]
    return {"at_init": ntk.ntk_condition_number(c.subject.init, inputs, reduction="sum"),
            "at_init_full": ntk.ntk_condition_number(c.subject.init, inputs[:min(n, 32)], reduction="full")}


def _landscape(c: Context) -> dict[str, Any]:
    s, small = c.settings, _take(c.data, c.settings.landscape_sample)
    plane = landscape.loss_landscape_2d(c.subject.model, c.loss_fn, small, steps=s.landscape_steps, seed=s.seed,
                                        mode=s.mode)
    line = landscape.loss_landscape_1d(c.subject.model, c.loss_fn, small, other=c.subject.init, span=(-0.25, 1.25),
                                       steps=s.landscape_steps * 2 - 1, mode=s.mode)
    return {"plane": plane, "init_to_final": line}


def _attention(c: Context) -> dict[str, Any]:
    subject = c.subject
    test = svdata.eval_loader(subject.bundle.test, dataclasses.replace(subject.cfg.data, eval_batch_size=8))
    images = next(iter(test))[0].to(subject.device)
    maps = attention.attention_maps(subject.model, images, mode=c.settings.mode)
    return {"grid": list(maps["grid"]), "rollout": maps["rollout"].tolist(), "cls_mean": maps["cls_mean"].tolist(),
            "settings": maps["settings"], "images": images.cpu().tolist()}


def _per_block(name: str, title: str, ylabel: str, log: bool = False) -> Figures:
    return lambda results, out: [plots.per_block(results, "per_block", out / name, title, ylabel, log=log)]


def _landscape_figures(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    return [plots.landscape_2d({run: r["plane"] for run, r in results.items()}, out / "landscape_2d.png"),
            plots.landscape_1d({run: r["init_to_final"] for run, r in results.items()}, out / "landscape_1d.png",
                               "loss from the trained weights (0) to the initialization (1)")]


def _attention_figures(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    (run, r), = results.items()
    cls_mean = torch.tensor(r["cls_mean"])
    return [plots.attention_grid(torch.tensor(r["images"]), {"rollout": torch.tensor(r["rollout"]),
                                                             "CLS attention, last layer": cls_mean[:, -1],
                                                             "CLS attention, first layer": cls_mean[:, 0]},
                                 out / "attention.png", f"{run}: attention")]


# the pieces in the order they run; adding one is one entry (and, for the short table, a line in summary_rows)
PIECES: dict[str, Piece] = {
    "hessian": Piece(_hessian, _per_block("hessian_per_block.png", "top Hessian eigenvalue per block", "lambda_max",
                                          log=True)),
    "trace": Piece(lambda c: hessian.hessian_trace(c.subject.model, c.loss_fn, c.data, method="hutch++",
                                                   samples=c.settings.trace_samples, **c.hessian_kwargs)),
    "density": Piece(lambda c: hessian.hessian_density(c.subject.model, c.loss_fn, c.data,
                                                       iters=c.settings.density_iters, runs=c.settings.density_runs,
                                                       **c.hessian_kwargs),
                     lambda results, out: [plots.density(results, out / "density.png")]),
    "sharpness": Piece(_sharpness),
    "ntk": Piece(_ntk),
    "landscape": Piece(_landscape, _landscape_figures),
    "flatness": Piece(lambda c: flatness.average_flatness(c.subject.model, c.loss_fn, c.data, sigma=0.01,
                                                          seed=c.settings.seed, mode=c.settings.mode)),
    "sparsity": Piece(lambda c: sparsity.active_neuron_fraction(c.subject.model, c.data, mode=c.settings.mode),
                      _per_block("sparsity.png", "active neurons (> 0 after the activation) per block",
                                 "fraction active")),
    "attention": Piece(_attention, _attention_figures, compares=False),
    "norms": Piece(lambda c: norms.weight_norms(c.subject.model),
                   _per_block("norms.png", "weight norm per block", "L2 norm")),
}


def analyze(subject: Subject, what: list[str], out_dir: Path, reuse: bool = False,
            progress: Callable[[str], None] = print, **settings: Any) -> dict[str, dict[str, Any]]:
    """Run the ``what`` pieces on ``subject``; write ``out_dir/<piece>.json`` (+ ``.png``); return the results.

    ``settings`` are :class:`Settings` fields (``sample=4096, repeats=5``, ...). ``reuse`` loads a piece's JSON
    already in ``out_dir`` when it is for this run at this epoch, so adding a piece or a comparison later does not
    recompute the expensive ones (the settings are those in the file).
    """
    _check_pieces(subject, what)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = Settings(**settings)
    data = sample_batches(subject.bundle.train_plain, min(s.sample, len(subject.bundle.train)), s.batch_size, s.seed,
                          subject.device)
    context, results = Context(subject, data, s), {}
    for name in what:
        path = out_dir / f"{name}.json"
        if reuse and (saved := _saved(path, subject)):
            progress(f"analyze {subject.name}: {name} (reused {path})")
            results[name] = saved
            continue
        progress(f"analyze {subject.name}: {name}")
        results[name] = {"run": subject.name, "model": subject.cfg.model.name, "epoch": subject.epoch,
                         "device": device_name(subject.device), "torch": str(torch.__version__),
                         **PIECES[name].compute(context)}
        path.write_text(json.dumps(results[name], indent=2, default=_plain) + "\n")
        PIECES[name].figures({subject.name: results[name]}, out_dir)
    return results


def _check_pieces(subject: Subject, what: list[str]) -> None:
    unknown = [w for w in what if w not in PIECES]
    if unknown:
        raise ConfigError(f"--what: unknown piece(s) {', '.join(unknown)}; choose from {', '.join(PIECES)}")
    family = models.family(subject.cfg.model.name)
    if "attention" in what and family != "vit":
        raise ConfigError(f"--what attention: model {subject.cfg.model.name!r} ({family}) has no attention; "
                          "attention maps need a ViT with a class token")


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """A short table: one headline figure per piece."""
    rows = []
    get = results.get
    if get("hessian"):
        h = results["hessian"]
        spread = f" (mean {h['lambda_max_mean']:.4g} +- {h['lambda_max_std']:.2g} over {len(h['lambda_max_over_samples'])} samples)" if len(h["lambda_max_over_samples"]) > 1 else ""  # noqa: E501
        rows.append(("lambda_max", f"{h['lambda_max']:.4g}{spread}"))
    if get("trace"):
        rows.append(("Hessian trace", f"{results['trace']['trace']:.4g} +- {results['trace']['stderr']:.2g}"))
    if get("sharpness"):
        s = results["sharpness"]
        rows.append(("SAM sharpness L(w+e)-L(w)", f"{s['sam']['sharpness']:.4g}"))
        rows.append(("worst-case sharpness", f"{s['worst_case']['sharpness']:.4g}"))
    if get("ntk"):
        k = results["ntk"]["at_init"]
        rows.append(("NTK kappa at init", f"{k['kappa']:.4g} (n={k['n']}, {k['reduction']}, {k['dtype']})"))
    if get("flatness"):
        f = results["flatness"]
        rows.append(("L(w+noise) (sigma 0.01)", f"{f['mean_loss_noisy']:.4g} (L(w) {f['loss']:.4g})"))
    if get("landscape"):
        rows.append(("landscape center loss", f"{results['landscape']['plane']['center_loss']:.4g}"))
    if get("sparsity"):
        rows.append(("active neurons", f"{results['sparsity']['overall']:.3f}"))
    if get("norms"):
        rows.append(("weight norm", f"{results['norms']['total']:.4g}"))
    return rows


def headline(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The headline figures as numbers, for JSON a script can read (summary_rows is for people)."""
    picks = {"lambda_max": ("hessian", "lambda_max"), "lambda_max_mean": ("hessian", "lambda_max_mean"),
             "lambda_max_std": ("hessian", "lambda_max_std"), "trace": ("trace", "trace"),
             "trace_stderr": ("trace", "stderr"), "sam_sharpness": ("sharpness", "sam", "sharpness"),
             "worst_case_sharpness": ("sharpness", "worst_case", "sharpness"),
             "ntk_kappa_at_init": ("ntk", "at_init", "kappa"), "loss": ("flatness", "loss"),
             "loss_under_noise": ("flatness", "mean_loss_noisy"), "active_fraction": ("sparsity", "overall"),
             "active_fraction_first_block": ("sparsity", "per_block", 0),
             "weight_norm": ("norms", "total")}
    out = {}
    for name, path in picks.items():
        value: Any = results
        for key in path:  # an int picks the n-th entry (blocks keep the model's order)
            if isinstance(key, int) and isinstance(value, dict):
                value = list(value.values())[key] if len(value) > key else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def _saved(path: Path, subject: Subject) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged file is recomputed, not trusted
    return saved if saved.get("run") == subject.name and saved.get("epoch") == subject.epoch else None


def _take(data: Batches, n: int) -> Batches:
    out, left = [], n
    for x, y in data:
        if left <= 0:
            break
        out.append((x[:left], y[:left]))
        left -= len(y)
    return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    return str(obj)


def compare(by_run: dict[str, dict[str, dict[str, Any]]], out_dir: Path, command: str = "") -> list[Path]:
    """Side-by-side figures and one JSON for several analysed runs (e.g. a ViT with and without SAM)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = {run: {"devices": sorted({p.get("device", "not recorded") for p in r.values()}),
                  "numbers": headline(r), "table": dict(summary_rows(r))} for run, r in by_run.items()}
    (out_dir / "compare.json").write_text(json.dumps({"command": command, "runs": runs}, indent=2) + "\n")
    written = [out_dir / "compare.json"]

    for name, piece in PIECES.items():
        runs_with = {run: r[name] for run, r in by_run.items() if name in r}
        if piece.compares and len(runs_with) > 1:
            written += piece.figures(runs_with, out_dir)
    return written
