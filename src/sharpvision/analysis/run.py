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
from sharpvision.train import checkpoint as ckpt
from sharpvision.train.loop import Runtime, build_model, device_name, seed_everything

PIECES = ("hessian", "trace", "density", "sharpness", "ntk", "landscape", "flatness", "sparsity", "attention",
          "norms")


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
    target = Path(target)
    saved = ckpt.load(target)
    cfg = svconfig.from_dict(saved.config)
    rt = Runtime.from_config(cfg)
    seed_everything(cfg.seed)  # the same draws as training, so ``init`` is the run's initialization
    bundle = svdata.build_datasets(cfg.data, label_smoothing=cfg.train.label_smoothing)
    init = build_model(cfg, bundle).to(rt.device).eval()
    model = build_model(cfg, bundle).eval()
    ckpt.fit(model, saved.model, saved.path, f"model {cfg.model.name!r}")
    model.to(rt.device)
    name = saved.path.parent.parent.name  # runs/<name>/checkpoints/step_N
    return Subject(name, cfg, model, init, bundle, rt.device, saved.manifest["epoch"])


def analyze(subject: Subject, what: list[str], out_dir: Path, sample: int = 2048, batch_size: int = 256,
            seed: int = 0, mode: str = "eval", dtype: str = "float32", repeats: int = 1, ntk_n: int = 128,
            landscape_sample: int = 512, landscape_steps: int = 11, trace_samples: int = 99,
            density_iters: int = 50, density_runs: int = 3, keep_graph: bool | None = None, reuse: bool = False,
            progress: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run the ``what`` pieces on ``subject``; write ``out_dir/<piece>.json`` (+ ``.png``); return the results.

    ``reuse`` loads a piece's JSON already in ``out_dir`` when it is for this run at this epoch, so adding a
    piece or a comparison later does not recompute the expensive ones (the settings are those in the file).
    """
    unknown = [w for w in what if w not in PIECES]
    if unknown:
        raise ValueError(f"--what: unknown piece(s) {', '.join(unknown)}; choose from {', '.join(PIECES)}")
    if "attention" in what and models.family(subject.cfg.model.name) != "vit":
        raise ValueError(f"--what attention: model {subject.cfg.model.name!r} ({models.family(subject.cfg.model.name)})"
                         " has no attention; attention maps need a ViT with a class token")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    loss_fn = nn.functional.cross_entropy
    model, dev = subject.model, subject.device
    n = min(sample, len(subject.bundle.train))
    data = sample_batches(subject.bundle.train_plain, n, batch_size, seed, dev)
    common = dict(mode=mode, dtype=torch_dtype, keep_graph=keep_graph)  # for the Hessian pieces
    results: dict[str, dict[str, Any]] = {}

    def record(piece: str, result: dict[str, Any]) -> None:
        result = {"run": subject.name, "model": subject.cfg.model.name, "epoch": subject.epoch,
                  "device": device_name(dev), "torch": str(torch.__version__), **result}
        (out_dir / f"{piece}.json").write_text(json.dumps(result, indent=2, default=_plain) + "\n")
        results[piece] = result

    for piece in what:
        if reuse and (saved := _saved(out_dir / f"{piece}.json", subject)):
            progress(f"analyze {subject.name}: {piece} (reused {out_dir / f'{piece}.json'})")
            results[piece] = saved
            continue
        progress(f"analyze {subject.name}: {piece}")
        if piece == "hessian":
            draws = [data] + [sample_batches(subject.bundle.train_plain, n, batch_size, seed + r, dev)
                              for r in range(1, repeats)]
            top = [hessian.hessian_eigenvalues(model, loss_fn, d, k=1, seed=seed, **common) for d in draws]
            blockwise = hessian.hessian_eigenvalues_per_block(model, loss_fn, data, seed=seed, **common)
            values = [t["eigenvalues"][0] for t in top]
            record(piece, {"lambda_max": values[0], "lambda_max_over_samples": values,
                           "lambda_max_mean": statistics.fmean(values),
                           "lambda_max_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                           "per_block": blockwise["blocks"], "settings": top[0]["settings"],
                           "sample_seeds": list(range(seed, seed + repeats))})
            plots.per_block({subject.name: results[piece]}, "per_block", out_dir / "hessian_per_block.png",
                            "top Hessian eigenvalue per block", "lambda_max", log=True)
        elif piece == "trace":
            record(piece, hessian.hessian_trace(model, loss_fn, data, method="hutch++", samples=trace_samples,
                                                seed=seed, **common))
        elif piece == "density":
            record(piece, hessian.hessian_density(model, loss_fn, data, iters=density_iters, runs=density_runs,
                                                  seed=seed, **common))
            plots.density({subject.name: results[piece]}, out_dir / "density.png")
        elif piece == "sharpness":
            record(piece, {"sam": flatness.sam_sharpness(model, loss_fn, data, rho=subject.cfg.optim.rho or 0.05,
                                                         mode=mode),
                           "worst_case": flatness.worst_case_sharpness(model, loss_fn, data, seed=seed, mode=mode),
                           "adaptive_worst_case": flatness.worst_case_sharpness(model, loss_fn, data, rho=0.5,
                                                                                adaptive=True, seed=seed, mode=mode)})
        elif piece == "ntk":
            inputs = torch.cat([x for x, _ in data])[:ntk_n]
            record(piece, {"at_init": ntk.ntk_condition_number(subject.init, inputs, reduction="sum"),
                           "at_init_full": ntk.ntk_condition_number(subject.init, inputs[:min(ntk_n, 32)],
                                                                    reduction="full")})
        elif piece == "landscape":
            small = _take(data, landscape_sample)
            plane = landscape.loss_landscape_2d(model, loss_fn, small, steps=landscape_steps, seed=seed, mode=mode)
            line = landscape.loss_landscape_1d(model, loss_fn, small, other=subject.init, span=(-0.25, 1.25),
                                               steps=landscape_steps * 2 - 1, mode=mode)
            record(piece, {"plane": plane, "init_to_final": line})
            plots.landscape_2d({subject.name: plane}, out_dir / "landscape_2d.png")
            plots.landscape_1d({subject.name: line}, out_dir / "landscape_1d.png",
                               "loss from the trained weights (0) to the initialization (1)")
        elif piece == "flatness":
            record(piece, flatness.average_flatness(model, loss_fn, data, sigma=0.01, seed=seed, mode=mode))
        elif piece == "sparsity":
            record(piece, sparsity.active_neuron_fraction(model, data, mode=mode))
            plots.per_block({subject.name: results[piece]}, "per_block", out_dir / "sparsity.png",
                            "active neurons (> 0 after the activation) per block", "fraction active")
        elif piece == "attention":
            test = svdata.eval_loader(subject.bundle.test, dataclasses.replace(subject.cfg.data, eval_batch_size=8))
            images = next(iter(test))[0].to(dev)
            maps = attention.attention_maps(model, images, mode=mode)
            record(piece, {"grid": list(maps["grid"]), "rollout": maps["rollout"].tolist(),
                           "cls_mean": maps["cls_mean"].tolist(), "settings": maps["settings"]})
            plots.attention_grid(images.cpu(), {"rollout": maps["rollout"].cpu(),
                                                "CLS attention, last layer": maps["cls_mean"][:, -1].cpu(),
                                                "CLS attention, first layer": maps["cls_mean"][:, 0].cpu()},
                                 out_dir / "attention.png", f"{subject.name}: attention")
        elif piece == "norms":
            record(piece, norms.weight_norms(model))
            plots.per_block({subject.name: results[piece]}, "per_block", out_dir / "norms.png",
                            "weight norm per block", "L2 norm")
    return results


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
             "weight_norm": ("norms", "total")}
    out = {}
    for name, path in picks.items():
        value: Any = results
        for key in path:
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

    def having(piece: str) -> dict[str, dict[str, Any]]:
        return {run: r[piece] for run, r in by_run.items() if piece in r}

    if len(h := having("hessian")) > 1:
        written.append(plots.per_block(h, "per_block", out_dir / "hessian_per_block.png",
                                       "top Hessian eigenvalue per block", "lambda_max", log=True))
    if len(d := having("density")) > 1:
        written.append(plots.density(d, out_dir / "density.png"))
    if len(s := having("sparsity")) > 1:
        written.append(plots.per_block(s, "per_block", out_dir / "sparsity.png",
                                       "active neurons (> 0 after the activation) per block", "fraction active"))
    if len(w := having("norms")) > 1:
        written.append(plots.per_block(w, "per_block", out_dir / "norms.png", "weight norm per block", "L2 norm"))
    if len(land := having("landscape")) > 1:
        written.append(plots.landscape_2d({run: r["plane"] for run, r in land.items()}, out_dir / "landscape_2d.png"))
        written.append(plots.landscape_1d({run: r["init_to_final"] for run, r in land.items()},
                                          out_dir / "landscape_1d.png",
                                          "loss from the trained weights (0) to the initialization (1)"))
    return written
