"""Loss-geometry measurements of a run directory or checkpoint, to JSON and PNG: the pieces (``PIECES``), their
settings, and the plan that checks a request before any work and then runs it resumably (what ``sharpvision
analyze`` and a suite's cells call).

Everything is measured on a fixed, seeded sample of the *training* set, read without augmentation
(the training loss the optimizer saw; the labels are the ones it trained on, label noise included).
The NTK is measured at initialization: the model is rebuilt with the run's seed, as training built it.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sharpvision import config as svconfig
from sharpvision import data as svdata
from sharpvision import models
from sharpvision.analysis import attention, flatness, hessian, landscape, norms, ntk, plots, sparsity
from sharpvision.analysis.core import Batches, blocks, reporting, sample_batches
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


# training examples behind a first look's Hessian pieces (the whole set when smaller): one batch of the default
# --batch-size, so its gradient graph is kept and each product is one backward (benchmarks/hvp_levers.py)
FIRST_LOOK_SAMPLE = 256
DEFAULT_SIZES = {"sample": FIRST_LOOK_SAMPLE, "landscape_sample": 512, "ntk_n": 256}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the pieces measure (the ``sharpvision analyze`` flags of the same names).

    The three sample sizes default to None: the size in ``DEFAULT_SIZES``, or the whole training set when it is
    smaller. A size asked for explicitly that is larger than the training set is refused (:func:`resolve`).
    """

    sample: int | None = None  # training examples in the fixed analysis sample
    batch_size: int = 256
    seed: int = 0  # of the sample and of the random vectors
    mode: str = "eval"  # model mode (BN, dropout) policy
    dtype: str = "float32"
    repeats: int = 1  # lambda_max on this many sample draws (spread)
    tol: float = 1e-3  # relative accuracy of each lambda_max (Lanczos' stopping rule)
    ntk_n: int | None = None  # inputs in the NTK kernel
    landscape_sample: int | None = None  # examples per landscape point
    landscape_steps: int = 11  # grid points per landscape axis
    trace_samples: int = 60  # at most this many Hutch++ matrix-vector products
    trace_digits: int = 2  # ... fewer once the trace's standard error allows this many significant digits
    density_iters: int = 50  # Lanczos steps per SLQ run
    density_runs: int = 3  # SLQ runs (random start vectors)
    keep_graph: bool | None = None  # Hessian pieces: build the sample's gradient graph once (None: if one batch)


def resolve(settings: Settings, subject: Subject) -> Settings:
    """``settings`` with the sample sizes filled in for ``subject``; one line naming a size that cannot be (a
    sample larger than the training set is refused, not silently cut)."""
    available = len(subject.bundle.train_plain)
    sizes = {}
    for name, default in DEFAULT_SIZES.items():
        asked = getattr(settings, name)
        if asked is None:
            sizes[name] = min(default, available)
        elif not 0 < asked <= available:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {asked}: the training set of run {subject.name} has {available} examples; "
                              f"ask for 1 to {available}")
        else:
            sizes[name] = asked
    return dataclasses.replace(settings, **sizes)


@dataclasses.dataclass
class Context:
    """What every piece measures on: the subject, its fixed samples (drawn when first needed), the settings."""

    subject: Subject
    settings: Settings
    loss_fn: Callable[..., torch.Tensor] = nn.functional.cross_entropy
    _samples: dict[int, Batches] = dataclasses.field(default_factory=dict)

    def sample(self, n: int | None = None) -> Batches:
        """The first ``n`` (default: ``settings.sample``) examples of the seeded sample, as batches. Samples of
        different sizes from one seed are prefixes of one permutation, so the smaller is part of the larger."""
        s, subject = self.settings, self.subject
        n = s.sample if n is None else n
        if n not in self._samples:
            self._samples[n] = sample_batches(subject.bundle.train_plain, n, s.batch_size, s.seed, subject.device)
        return self._samples[n]

    @property
    def data(self) -> Batches:
        return self.sample()

    @property
    def hessian_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return dict(mode=s.mode, dtype={"float32": torch.float32, "float64": torch.float64}[s.dtype],
                    keep_graph=s.keep_graph, seed=s.seed)


Figures = Callable[[dict[str, dict[str, Any]], Path], list[Path]]  # results by run -> the PNGs written in a folder
_SAMPLED = ("sample", "batch_size", "seed", "mode")  # what a piece measured on the fixed sample depends on
_CURVATURE = (*_SAMPLED, "dtype", "keep_graph")


@dataclasses.dataclass(frozen=True)
class Piece:
    """One measurement: how to compute it on a subject, how to draw one or several runs' results, the settings
    its result depends on (a saved result with the same ones is resumed, not recomputed), and the units of work
    its progress bar counts (``expected``: how many, for the ETA)."""

    compute: Callable[[Context], dict[str, Any]]
    uses: tuple[str, ...]
    expected: Callable[[Context], int]
    unit: str
    figures: Figures = lambda results, out: []  # noqa: E731
    compares: bool = True  # the figures can show several runs side by side


_LANCZOS_STEPS = 15  # a typical run to tol 1e-3 from the gradient start: the ETA's guess, not a limit


def _hessian(c: Context) -> dict[str, Any]:
    s, subject = c.settings, c.subject
    draws = [c.data] + [sample_batches(subject.bundle.train_plain, s.sample, s.batch_size, s.seed + r,
                                       subject.device) for r in range(1, s.repeats)]
    top = [hessian.hessian_eigenvalues(c.subject.model, c.loss_fn, d, k=1, tol=s.tol, **c.hessian_kwargs)
           for d in draws]
    blockwise = hessian.hessian_eigenvalues_per_block(c.subject.model, c.loss_fn, c.data, tol=s.tol,
                                                      **c.hessian_kwargs)
    values = [t["eigenvalues"][0] for t in top]
    return {"lambda_max": values[0], "lambda_max_over_samples": values, "lambda_max_mean": statistics.fmean(values),
            "lambda_max_std": statistics.stdev(values) if len(values) > 1 else 0.0, "per_block": blockwise["blocks"],
            "matvecs": sum(t["matvecs"] for t in top) + blockwise["matvecs"],
            "settings": top[0]["settings"], "sample_seeds": list(range(s.seed, s.seed + s.repeats))}


def _sharpness(c: Context) -> dict[str, Any]:
    model, mode, seed = c.subject.model, c.settings.mode, c.settings.seed
    return {"sam": flatness.sam_sharpness(model, c.loss_fn, c.data, rho=c.subject.cfg.optim.rho or 0.05, mode=mode),
            "worst_case": flatness.worst_case_sharpness(model, c.loss_fn, c.data, seed=seed, mode=mode),
            "adaptive_worst_case": flatness.worst_case_sharpness(model, c.loss_fn, c.data, rho=0.5, adaptive=True,
                                                                 seed=seed, mode=mode)}


def _ntk(c: Context) -> dict[str, Any]:
    inputs = torch.cat([x for x, _ in c.sample(c.settings.ntk_n)])
    return {"at_init": ntk.ntk_condition_number(c.subject.init, inputs, reduction="sum"),
            "at_init_full": ntk.ntk_condition_number(c.subject.init, inputs[:32], reduction="full")}


def _landscape_2d(c: Context) -> dict[str, Any]:
    s = c.settings
    return {"plane": landscape.loss_landscape_2d(c.subject.model, c.loss_fn, c.sample(s.landscape_sample),
                                                 steps=s.landscape_steps, seed=s.seed, mode=s.mode)}


def _landscape_1d(c: Context) -> dict[str, Any]:
    s = c.settings
    return landscape.loss_landscape_1d(c.subject.model, c.loss_fn, c.sample(s.landscape_sample),
                                       other=c.subject.init, span=(-0.5, 1.5), steps=s.landscape_steps * 2 - 1,
                                       mode=s.mode)


def _attention(c: Context) -> dict[str, Any]:
    subject = c.subject
    test = svdata.eval_loader(subject.bundle.test, dataclasses.replace(subject.cfg.data, eval_batch_size=8))
    images = next(iter(test))[0].to(subject.device)
    maps = attention.attention_maps(subject.model, images, mode=c.settings.mode)
    return {"grid": list(maps["grid"]), "rollout": maps["rollout"].tolist(), "cls_mean": maps["cls_mean"].tolist(),
            "settings": maps["settings"], "images": images.cpu().tolist()}


def _per_block(name: str, title: str, ylabel: str, log: bool = False) -> Figures:
    return lambda results, out: [plots.per_block(results, "per_block", out / name, title, ylabel, log=log)]


def _attention_figures(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    (run, r), = results.items()
    cls_mean = torch.tensor(r["cls_mean"])
    return [plots.attention_grid(torch.tensor(r["images"]), {"rollout": torch.tensor(r["rollout"]),
                                                             "CLS attention, last layer": cls_mean[:, -1],
                                                             "CLS attention, first layer": cls_mean[:, 0]},
                                 out / "attention.png", f"{run}: attention")]


def _batches(c: Context) -> int:
    return -(-c.settings.sample // c.settings.batch_size)


# the pieces in the order they run; adding one is one entry (and, for the short table, a line in summary_rows)
PIECES: dict[str, Piece] = {
    "hessian": Piece(_hessian, (*_CURVATURE, "repeats", "tol"),
                     lambda c: _LANCZOS_STEPS * (c.settings.repeats + len(blocks(c.subject.model))), "products",
                     _per_block("hessian_per_block.png", "top Hessian eigenvalue per block", "lambda_max", log=True)),
    "trace": Piece(lambda c: hessian.hessian_trace(c.subject.model, c.loss_fn, c.data, method="hutch++",
                                                   samples=c.settings.trace_samples, digits=c.settings.trace_digits,
                                                   **c.hessian_kwargs),
                   (*_CURVATURE, "trace_samples", "trace_digits"), lambda c: c.settings.trace_samples, "products"),
    "sparsity": Piece(lambda c: sparsity.active_neuron_fraction(c.subject.model, c.data, mode=c.settings.mode),
                      _SAMPLED, _batches, "batches",
                      _per_block("sparsity.png", "active neurons (> 0 after the activation) per block",
                                 "fraction active")),
    "landscape_1d": Piece(_landscape_1d, ("landscape_sample", "landscape_steps", "batch_size", "seed", "mode"),
                          lambda c: 2 * c.settings.landscape_steps - 1, "points",
                          lambda results, out: [plots.landscape_1d(results, out / "landscape_1d.png",
                                                                   "loss from the trained weights (0) to the "
                                                                   "initialization (1)")]),
    "norms": Piece(lambda c: norms.weight_norms(c.subject.model), (), lambda c: 1, "pieces",
                   _per_block("norms.png", "weight norm per block", "L2 norm")),
    "sharpness": Piece(_sharpness, _SAMPLED, lambda c: 20, "gradients"),
    "flatness": Piece(lambda c: flatness.average_flatness(c.subject.model, c.loss_fn, c.data, sigma=0.01,
                                                          seed=c.settings.seed, mode=c.settings.mode),
                      _SAMPLED, lambda c: 20, "draws"),
    "landscape": Piece(_landscape_2d, ("landscape_sample", "landscape_steps", "batch_size", "seed", "mode"),
                       lambda c: c.settings.landscape_steps ** 2, "points",
                       lambda results, out: [plots.landscape_2d({run: r["plane"] for run, r in results.items()},
                                                                out / "landscape_2d.png")]),
    "density": Piece(lambda c: hessian.hessian_density(c.subject.model, c.loss_fn, c.data,
                                                       iters=c.settings.density_iters, runs=c.settings.density_runs,
                                                       **c.hessian_kwargs),
                     (*_CURVATURE, "density_iters", "density_runs"),
                     lambda c: c.settings.density_iters * c.settings.density_runs, "products",
                     lambda results, out: [plots.density(results, out / "density.png")]),
    "ntk": Piece(_ntk, ("ntk_n", "seed"), lambda c: 1, "pieces"),
    "attention": Piece(_attention, ("mode",), lambda c: 1, "pieces", _attention_figures, compares=False),
}
FIRST_LOOK = ("hessian", "trace", "sparsity", "landscape_1d", "norms")  # what `analyze` does without --what


@dataclasses.dataclass
class Plan:
    """What :func:`execute` will do for one subject, checked before anything is computed."""

    subject: Subject
    pieces: list[str]
    out_dir: Path
    settings: Settings
    reused: dict[str, dict[str, Any]]  # piece -> its saved result, loaded instead of recomputed


def plan(subject: Subject, what: list[str], out_dir: Path, reuse: bool = False, overwrite: bool = False,
         **settings: Any) -> Plan:
    """Check every request against ``subject`` and ``out_dir`` before any work: the pieces, the settings, and
    what the folder already holds.

    A piece's JSON already there for this run, epoch and the same settings is resumed (an interrupted analyze
    carries on where it stopped). ``reuse`` also takes one computed with other settings, for this run and epoch.
    Anything else there (other settings, another checkpoint or run, an unreadable file) is refused, so that
    nothing finished is overwritten unasked: ``overwrite`` replaces it, or choose another ``out_dir``.
    """
    s = Settings(**settings)
    _check_pieces(subject, what, s.tol)
    s = resolve(s, subject)
    reused = {}
    for name in what:
        path = out_dir / f"{name}.json"
        if not path.exists():
            continue
        saved, why = _saved(path, subject, _wanted(name, s), reuse)
        if saved is not None:
            reused[name] = saved
        elif not overwrite:
            raise ConfigError(f"{path} holds {name} {why}; pass --reuse to load it"
                              f" (same run and checkpoint only), --overwrite to replace it, or --out DIR to keep"
                              f" both")
    return Plan(subject, list(what), out_dir, s, reused)


def execute(p: Plan, progress: Callable[[str], None] = print, bars: bool | None = None) -> dict[str, dict[str, Any]]:
    """Run a :class:`Plan`: each piece's JSON and figures are written as soon as it is done. ``bars``: a
    progress bar per piece with its own ETA (None: only when stderr is a terminal); ``progress`` gets a line
    per piece."""
    p.out_dir.mkdir(parents=True, exist_ok=True)
    subject, context, results = p.subject, Context(p.subject, p.settings), {}
    for name in p.pieces:
        path = p.out_dir / f"{name}.json"
        if name in p.reused:
            progress(f"analyze {subject.name}: {name} (resumed from {path})")
            results[name] = p.reused[name]
            continue
        progress(f"analyze {subject.name}: {name}")
        piece = PIECES[name]
        start = time.perf_counter()
        with _bar(f"{subject.name}: {name}", piece.expected(context), piece.unit, bars) as tick, \
                reporting(tick):
            computed = piece.compute(context)
        results[name] = {"run": subject.name, "model": subject.cfg.model.name, "epoch": subject.epoch,
                         "device": device_name(subject.device), "torch": str(torch.__version__),
                         "seconds": time.perf_counter() - start, "analyze_settings": _wanted(name, p.settings),
                         **computed}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results[name], indent=2, default=_plain) + "\n")
        tmp.replace(path)  # a piece's file is whole or absent, never half written
        piece.figures({subject.name: results[name]}, p.out_dir)
    return results


def analyze(subject: Subject, what: list[str], out_dir: Path, reuse: bool = False, overwrite: bool = False,
            progress: Callable[[str], None] = print, bars: bool | None = None,
            **settings: Any) -> dict[str, dict[str, Any]]:
    """Run the ``what`` pieces on ``subject``; write ``out_dir/<piece>.json`` (+ ``.png``); return the results.

    ``settings`` are :class:`Settings` fields (``sample=4096, repeats=5``, ...); ``reuse`` and ``overwrite``:
    see :func:`plan`, which checks everything before the first piece starts.
    """
    return execute(plan(subject, what, out_dir, reuse, overwrite, **settings), progress, bars)


@contextmanager
def _bar(desc: str, total: int, unit: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """A tqdm bar of ``total`` expected units (terminal only unless ``enabled``); completes when the piece does,
    whether it took more or fewer units than expected."""
    bar = tqdm(total=total, desc=desc, unit=unit, leave=True, disable=None if enabled is None else not enabled,
               file=sys.stderr)

    def tick(n: int) -> None:
        if bar.n + n > bar.total:  # more work than expected: the bar stretches rather than overflowing
            bar.total = bar.n + n
        bar.update(n)

    try:
        yield tick
        bar.total = bar.n  # fewer than expected: full at the end
        bar.refresh()
    finally:
        bar.close()


def _wanted(name: str, s: Settings) -> dict[str, Any]:
    """The settings a piece's result depends on, as JSON would give them back."""
    return json.loads(json.dumps({f: getattr(s, f) for f in PIECES[name].uses}))


def check_request(what: list[str], tol: float) -> None:
    """What can be checked without a checkpoint: the piece names and the tolerance, one line naming the culprit."""
    if not what:
        raise ConfigError(f"--what: no piece named; choose from {', '.join(PIECES)}, or 'all'")
    unknown = [w for w in what if w not in PIECES]
    if unknown:
        raise ConfigError(f"--what: unknown piece(s) {', '.join(unknown)}; choose from {', '.join(PIECES)}")
    if not 0 < tol < 1:
        raise ConfigError(f"--tol {tol}: must be in (0, 1), the relative accuracy asked of lambda_max")


def _check_pieces(subject: Subject, what: list[str], tol: float) -> None:
    check_request(what, tol)
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
        t = results["trace"]
        rows.append(("Hessian trace", f"{t['trace']:.4g} +- {t['stderr']:.2g} ({t['matvecs']} products)"))
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
    if get("landscape_1d"):
        line = results["landscape_1d"]
        loss = dict(zip(line["alphas"], line["loss"]))
        ends = f"{loss[0.0]:.4g} -> {loss[1.0]:.4g}, " if {0.0, 1.0} <= loss.keys() else ""
        rows.append(("loss trained -> init (1-D)", f"{ends}max on the line {max(line['loss']):.4g}"))
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


def _saved(path: Path, subject: Subject, wanted: dict[str, Any],
           reuse: bool) -> tuple[dict[str, Any] | None, str]:
    """The saved result at ``path`` if it may stand in for a new one, else None and why not (for the message)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, "that cannot be read"
    if saved.get("run") != subject.name or saved.get("epoch") != subject.epoch:
        return None, f"of run {saved.get('run')!r} at epoch {saved.get('epoch')} (this is {subject.name!r} at " \
                     f"epoch {subject.epoch})"
    if reuse or saved.get("analyze_settings") == wanted:
        return saved, ""
    had = saved.get("analyze_settings") or {}
    differ = [f"{k} {had.get(k, 'not recorded')} (asked {v})" for k, v in wanted.items() if had.get(k) != v]
    return None, "computed with other settings: " + ", ".join(differ or ["not recorded"])


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
