#!/usr/bin/env python3
"""Write the benchmark figures quoted in the docs from benchmarks/results, so that a quoted number cannot drift.

The docs quote a measured figure only inside a block named after a result under ``benchmarks/results/``::

    <!-- figures: sam_overhead_cpu -->
    (rendered from benchmarks/results/sam_overhead_cpu.json: never edit by hand)
    <!-- /figures: sam_overhead_cpu -->

The result's name picks its renderer (the longest registered prefix: ``sam_overhead``), so a new result of a known
benchmark, such as ``sam_overhead_cuda``, needs a block and no code. ``NAME:VIEW`` renders another view of the same
result (``paper_cpu:noise``, the label-noise table of the paper-cpu suite) with the renderer registered for it.
Every rendering ends with the file, the command, the device and the torch version recorded in the result.

    python scripts/docs_figures.py            # rewrite every block in README.md and docs/*.md (make docs)
    python scripts/docs_figures.py --check    # change nothing; list the stale blocks, exit 1 if any

tests/test_docs.py runs the same check. Only the standard library is used, so any Python 3.10+ runs it.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STUDIES = ROOT / "studies"  # the scripts that train, evaluate or tabulate for a study (benchmarks/ times)
# markers stand alone on their line, so a page can mention one inline (in backticks) without opening a block
OPEN = re.compile(r"^<!-- figures: ([\w.:-]+) -->$", re.M)
BLOCK = re.compile(r"^<!-- figures: (?P<name>[\w.:-]+) -->\n.*?^<!-- /figures: (?P=name) -->$", re.S | re.M)

Renderer = Callable[[Path], str]
RENDERERS: dict[str, Renderer] = {}


def renders(prefix: str) -> Callable[[Renderer], Renderer]:
    """Register a renderer for the results whose name starts with ``prefix``."""
    def register(fn: Renderer) -> Renderer:
        RENDERERS[prefix] = fn
        return fn
    return register


def doc_files() -> list[Path]:
    """The pages that may hold blocks."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "docs" / "studies").glob("*.md"))]


def result_path(name: str) -> Path:
    """``benchmarks/results/NAME.json``, or the folder ``NAME/`` (analysis results are folders)."""
    for path in (RESULTS / f"{name}.json", RESULTS / name):
        if path.exists():
            return path
    raise ValueError(f"figures block {name!r}: no benchmarks/results/{name}.json or folder {name}/")


def render_block(name: str) -> str:
    """The text between the markers of block ``name``."""
    prefixes = [p for p in RENDERERS if name.startswith(p)]
    if not prefixes:
        raise ValueError(f"figures block {name!r}: no renderer for it (known prefixes: {', '.join(RENDERERS)})")
    return RENDERERS[max(prefixes, key=len)](result_path(name.partition(":")[0])).strip()


def render(text: str) -> str:
    """``text`` with every block rewritten from the results as they are now."""
    opened, closed = OPEN.findall(text), [m["name"] for m in BLOCK.finditer(text)]
    if opened != closed:
        raise ValueError(f"figures blocks opened {opened} but closed {closed}: a block lacks its end marker")
    return BLOCK.sub(lambda m: (f"<!-- figures: {m['name']} -->\n{render_block(m['name'])}\n"
                                f"<!-- /figures: {m['name']} -->"), text)


# ---- formatting shared by the renderers ----

def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def paragraph(text: str) -> str:
    """Wrap prose at 115 columns so the rendered Markdown reads like the hand-written text around it."""
    return textwrap.fill(" ".join(text.split()), 115, break_long_words=False, break_on_hyphens=False)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def command(data: dict[str, Any]) -> str:
    """The recorded command with its script where it is now: some results were made from inside benchmarks/, so their
    script gets its folder, a study recorded as benchmarks/NAME.py lives in studies/ now, and a pilot suite recorded
    under benchmarks/suites/ is a shipped suite now."""
    def now(m: re.Match[str]) -> str:
        return f"python {'studies' if (STUDIES / m[1]).is_file() else 'benchmarks'}/{m[1]}"
    def suite(m: re.Match[str]) -> str:  # the pilot suites moved from benchmarks/suites/ to the shipped ones
        shipped = f"configs/suites/{m[1].replace('_', '-')}.yaml"
        return shipped if (ROOT / shipped).is_file() else m[0]
    moved = re.sub(r"benchmarks/suites/(\w+)\.yaml", suite, data["command"])
    return re.sub(r"(?<![\w/-])python (?:benchmarks/)?(\w+\.py)", now, moved)


def source(path: Path, cmd: str, device: str, torch: str) -> str:
    """The line that closes every block: where the figures come from."""
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return paragraph(f"_Source: `{shown}`; command: `{cmd}`; device: {device}; torch: {torch}._")


def standard_source(path: Path, data: dict[str, Any]) -> str:
    """:func:`source` for results written by benchmarks/common.py (device, versions, command)."""
    return source(path, command(data), data["device"], data["versions"]["torch"])


def sci(x: float) -> str:
    """1.5e5 rather than 1.5e+05; inf as inf."""
    return "inf" if x == float("inf") else re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.1e}")


def overrides(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def mean_std(cell: dict[str, float], digits: int) -> str:
    return f"{cell['mean']:.{digits}f} +- {cell['std']:.{digits}f}"


def span(values: list[float], fmt: str = ".2f") -> str:
    """A range, low-high."""
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


# ---- one renderer per benchmark ----

@renders("demo")
def demo(path: Path) -> str:
    """benchmarks/demo_record.py: the demo's table, its test-accuracy curves and its own what-it-shows line."""
    d = load(path)
    minutes, seconds = divmod(round(d["demo_wall_time_s"]), 60)
    notes = paragraph(f"{d['what_it_shows']} The whole command took {minutes} min {seconds} s.")
    return (f"```\n{d['table']}\n```\n\nTest accuracy per evaluated epoch:\n\n```\n{d['curves']}\n```\n\n{notes}\n\n"
            + source(path, d["command"], d["device"], d["versions"]["torch"]))


def _overhead_label(setting: str, k: int) -> str:
    names = {"base": "AdamW", "sam": "SAM", f"sam_every_{k}": f"SAM-{k}", f"looksam_{k}": f"LookSAM-{k}",
             "gsam": "GSAM"}
    return names.get(setting, setting)


@renders("sam_overhead")
def sam_overhead(path: Path) -> str:
    d = load(path)
    first = d["results"][0]
    k, settings = first["k"], list(first["settings"])
    rows, drift, looksam_extra = [], [], []
    for r in d["results"]:
        s = r["settings"]
        cells = [f"{s[name]['ratio_of_medians']:.3f}" for name in settings[1:]]
        rows.append([f"`{r['model']}` ({r['params'] / 1e6:.2f}M)", f"{1e3 * s['base']['step_s_median']:.1f} ms = 1",
                     *cells])
        drift += [abs(v["ratio_of_medians"] - v["median_of_pair_ratios"]) for v in s.values()]
        if f"looksam_{k}" in s and f"sam_every_{k}" in s:
            extra = s[f"looksam_{k}"]["step_s_median"] / s[f"sam_every_{k}"]["step_s_median"] - 1
            looksam_extra.append(f"{100 * extra:.1f}% on `{r['model']}`")
    notes = paragraph(
        f"Batch {first['batch']} at {first['img_size']} px, {d['precision']}, compiled: "
        f"{'yes' if d['compiled'] else 'no'}; blocks of k = {k} steps, {first['repeats']} repeats, medians. "
        f"Ratios of medians; the medians of the per-repeat ratios are within {max(drift):.2f} of them. "
        + (f"LookSAM-{k} costs more than SAM-{k} by {' and '.join(looksam_extra)}." if looksam_extra else ""))
    header = ["model", *(_overhead_label(name, k) for name in settings)]
    return f"{table(header, rows)}\n\n{notes}\n\n{standard_source(path, d)}"


@renders("peer_loop")
def peer_loop(path: Path) -> str:
    d = load(path)
    ips = d["images_per_s"]
    text = paragraph(
        f"**Ours {ips['ours']['median']:.0f} images/s, peer {ips['peer']['median']:.0f} images/s: "
        f"{d['ratio_ours_over_peer']:.2f}x.** `{d['model']}`, batch {d['batch']}, {d['precision']}, ours with the "
        f"{d['ours_loader']} loader (compiled: {'yes' if d['ours_compiled'] else 'no'}), the peer's DataLoader with "
        f"{d['peer_workers']} worker{'s' if d['peer_workers'] > 1 else ''}; {d['rounds']} alternating rounds of "
        f"{d['timed_epochs_per_round']} timed epochs of {d['steps_per_epoch']} steps, medians.")
    return f"{text}\n\n{standard_source(path, d)}"


@renders("mfu")
def mfu(path: Path) -> str:
    d = load(path)
    first = d["results"][0]
    runs = "; ".join(f"{r['optimizer']} {r['tflops_per_s']:.3f} TFLOP/s ({r['images_per_s']:.1f} images/s"
                     + (f", MFU {100 * r['mfu']:.1f}%)" if r["mfu"] is not None else ")") for r in d["results"])
    peak = (f"peak {d['peak_tflops']} TFLOP/s" if d["peak_tflops"] else
            "no MFU: the device has no peak in the table")
    text = paragraph(
        f"`{first['model']}` at {first['img_size']} px: {first['flops_per_image'] / 1e9:.1f} GFLOPs per training "
        f"image (forward + backward, torch's flop counter). Batch {first['batch']}, {d['precision']}, compiled: "
        f"{'yes' if d['compiled'] else 'no'}: {runs}; {peak}.")
    return f"{text}\n\n{standard_source(path, d)}"


def _grid(path: Path, label: Callable[[str, dict[str, Any]], str], note: str = "") -> str:
    """The settings-by-seeds benchmarks (sam_variants, m_sharpness): a table of accuracy and cost per setting."""
    d = load(path)
    rows = []
    for name, cell in d["table"].items():
        acc = cell["test_accuracy"]
        rows.append([label(name, d["runs"][name][0]), f"{mean_std(acc, 4)} (n={acc['n']})",
                     f"{cell['images_per_s']['mean']:.0f}", f"{cell['cost_vs_base']:.2f}"])
    minutes = sum(r["wall_time_s"] for runs in d["runs"].values() for r in runs) / 60
    settings = paragraph(
        f"Every setting is `{d['recipe']}` with {', '.join(f'`{o}`' for o in d['overrides'])}; mean +- std over "
        f"seeds; cost = AdamW's images/s over the setting's (whole-run training throughput). Training time of all "
        f"runs together: {minutes:.1f} min. {note}")
    header = ["setting", "test accuracy", "images/s", "cost vs AdamW"]
    return f"{table(header, rows)}\n\n{settings}\n\n{standard_source(path, d)}"


@renders("sam_variants")
def sam_variants(path: Path) -> str:
    text = _grid(path, lambda name, run: run["optimizer"])
    gain = load(path)["sam_gain"]
    note = (f"SAM's gain over AdamW: {100 * gain:+.1f} points"
            + ("; it is not positive, so the share of it a variant keeps is undefined." if gain <= 0 else "."))
    return f"{paragraph(note)}\n\n{text}"


@renders("m_sharpness")
def m_sharpness(path: Path) -> str:
    d = load(path)
    batch = int(overrides(d["overrides"])["data.batch_size"])

    def label(name: str, run: dict[str, Any]) -> str:
        m = run.get("sam_m")
        return run["optimizer"] if m is None else f"{run['optimizer']}, m = {m} ({batch // m} per batch)"

    diffs = [f"m = {d['runs'][name][0]['sam_m']}: {100 * row['test_accuracy_vs_one_per_batch']:+.1f} points"
             for name, row in d["table"].items() if "test_accuracy_vs_one_per_batch" in row]
    note = f"Against one perturbation per batch (m = {batch}): {'; '.join(diffs)}." if diffs else ""
    return _grid(path, label, note)


@renders("looksam_drift")
def looksam_drift(path: Path) -> str:
    d = load(path)
    rows = []
    for r in d["results"]:
        b = r["batches"]
        previous = [x["cos_gv_previous"] for x in b if x["cos_gv_previous"] is not None]
        rows.append([f"{r['rho']}", span([x["cos_g_gs"] for x in b]), span([x["gv_over_g"] for x in b]),
                     span(previous)])
    header = ["rho", "cos(g, g_s)", "\\|\\|g_v\\|\\| / \\|\\|g\\|\\|", "cos(g_v, previous batch's g_v)"]
    setting = paragraph(f"`{d['model']}` at init, batch {d['batch']}, {d['precision']}, "
                        f"{len(d['results'][0]['batches'])} consecutive training batches; ranges over the batches.")
    return f"{table(header, rows)}\n\n{setting}\n\n{standard_source(path, d)}"


@renders("looksam_alpha")
def looksam_alpha(path: Path) -> str:
    d = load(path)
    names = {"adamw": "AdamW", "ours": "LookSAM (sharpvision, global g_v)", "peer": "LookSAM (pytorch-optimizer, "
                                                                              "per-tensor g_v)"}
    rows = [[names[r["impl"]], "-" if r["alpha"] is None else f"{r['alpha']}",
             f"{100 * r['val_accuracy']:.1f}", f"{r['curve'][-1]['train_loss']:.3f}"] for r in d["results"]]
    setting = paragraph(f"`{d['model']}`, {d['train_images']:,} training images, batch 128, {d['epochs']} epochs, "
                        f"rho {d['rho']}, k = {d['k']}, {d['base']}, seed {d['seed']}; validation accuracy on "
                        f"{d['val_images']:,} held-out training images. alpha = 0 is SAM-{d['k']}.")
    header = ["optimizer", "alpha", "val accuracy (%)", "train loss, last epoch"]
    return f"{table(header, rows)}\n\n{setting}\n\n{standard_source(path, d)}"


@renders("time_to_accuracy")
def time_to_accuracy(path: Path) -> str:
    d = load(path)
    target = d["target_test_accuracy"]
    lines = []
    for r in d["results"].values():
        who = f"`{r['model']}` with {r['optimizer']}"
        if r["epoch"] is not None:
            lines.append(f"- {who} reached {100 * target:.0f}% at epoch {r['epoch']} after "
                         f"**{r['wall_time_s']:.0f} s** ({r['images_per_s']:,.0f} images/s).")
        else:
            lines.append(f"- {who} never did: {r['final_test_accuracy']:.3f} after {r['total_wall_time_s']:.0f} s "
                         f"({r['images_per_s']:,.0f} images/s).")
    o = overrides(next(iter(d["results"].values()))["overrides"])
    setting = paragraph(f"Target: {100 * target:.0f}% test accuracy; {int(o['data.subset_train']):,} training and "
                        f"{int(o['data.subset_test']):,} test images, {o['schedule.epochs']} epochs; wall time is "
                        "the trainer's cumulative training and evaluation time.")
    return f"{setting}\n\n" + "\n".join(lines) + f"\n\n{standard_source(path, d)}"


@renders("cli_startup")
def cli_startup(path: Path) -> str:
    d = load(path)
    now, before = d["trees"]["now"], d["trees"].get("before", {})
    rows = []
    for cmd, t in now.items():
        loads = ", ".join(f"`{m}`" for m in t["heavy_modules"]) or "none"
        row = [f"`{cmd}`", f"{t['median_s']:.2f} s", loads]
        if before:
            speedup = d["speedup"][cmd]
            row += [f"{before[cmd]['median_s']:.2f} s", f"{speedup:.0f}x" if speedup >= 10 else f"{speedup:.2f}x"]
        rows.append(row)
    header = ["command", "now", "heavy modules it loads"] + (["the older tree", "speed-up"] if before else [])
    setting = paragraph(f"Each command in a fresh interpreter, median of {d['repeats']}"
                        + ("; the older source tree is the one given to `--before`, run alternately." if before
                           else "."))
    return f"{table(header, rows)}\n\n{setting}\n\n{standard_source(path, d)}"


@renders("suite_")
def suite(path: Path) -> str:
    """Any suite's aggregate (studies/suite_result.py): the seed groups, mean +- std with n, and per cell the
    epoch of its best validation accuracy (the learning curves are in the cells' result.json)."""
    d = load(path)
    names = [("train_accuracy", "final train accuracy (labels trained on)"), ("best_val_accuracy", "best val accuracy"),
             ("val_accuracy", "final val accuracy"), ("test_accuracy", "final test accuracy")]
    rows = []
    for key, group in d["groups"].items():
        m = group["metrics"]
        rows.append([key or "(one group)", str(group["n"]),
                     *[mean_std(m[name], 4) if name in m else "-" for name, _ in names]])
    best = [f"{cell}: epoch {epoch} of {epochs}" for cell, (epoch, epochs) in d["best_val_epoch"].items()]
    note = paragraph(f"Suite `{d['suite']}`, {d['cells_done']} of {d['cells_total']} cells done; mean +- std "
                     "over seeds (n - 1), n cells per row. Best validation accuracy reached at: " + "; ".join(best)
                     + ".")
    return f"{table(['cells', 'n', *[label for _, label in names]], rows)}\n\n{note}\n\n{standard_source(path, d)}"


def _p_text(p: float | None) -> str:
    return "" if p is None else ", p < 0.001" if p < 1e-3 else f", p = {p:.2g}"


def _ours(test: dict[str, Any]) -> str:
    """A comparison's effect as claims.json gives it (``effect``, ``ci``: points, or a log ratio, and ``p``); a file
    written before effects were recorded is re-read by ``sharpvision report DIR``. Never a number not measured."""
    if test.get("effect") is None:
        return "not measured"
    unit = "" if test.get("unit", "points").startswith("points") else f" {test['unit']}"
    fmt = "+.1f" if not unit else "+.2f"
    ci = f" [{test['ci'][0]:{fmt}}, {test['ci'][1]:{fmt}}]" if test.get("ci") else ""
    return f"{test['effect']:{fmt}}{ci}{unit}{_p_text(test.get('p'))}"


def claims_table(claims: dict[str, Any]) -> str:
    """claims.json as a table of 120-column rows: a row per claim (its verdict in bold), a row per comparison."""
    rows = []
    for c in claims["claims"]:
        rows.append([c["claim"], "", "", f"**{c['verdict']}**"])
        for test in c.get("tests", []):
            paper = test.get("paper", "")  # claims.json's short paper value (sharpvision.paper)
            rows.append([f"`{test['compare']}`", paper, _ours(test), test["verdict"]])
        if not c.get("tests") and c.get("why"):
            rows.append([c["why"], "", "", ""])
    with_ci = any("effect" in t for c in claims["claims"] for t in c.get("tests", []))
    header = ["claim, then each comparison `A > B`", "the paper: A vs B", f"ours: A - B{' [95% CI]' * with_ci}",
              "verdict"]
    text = table(header, rows)
    if claims.get("smoke"):
        text = ("**A smoke test: these numbers mean nothing.** The suite declares itself a smoke test; its verdicts "
                "are shown only to check the machinery.\n\n" + text)
    notes = [f"- `{c['id']}` re-read with the fixed instrument: {c['verdict']} (was {c['reanalysed']['verdict']}). "
             f"{c['reanalysed'].get('note', '')}".strip() for c in claims["claims"] if c.get("reanalysed")]
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _units_note(claims: dict[str, Any]) -> str:
    """What the ours column is in: the effects' units, the tests and n, as claims.json records them."""
    tests = [t for c in claims["claims"] for t in c.get("tests", [])]
    ns = sorted({t["n"] for t in tests if t.get("n") is not None})
    tested = sorted({t["test"] for t in tests if t.get("test")})
    return (f"Ours: the effect A - B in points (percentage points; a log ratio where marked) with its 95% "
            f"interval, by {' or '.join(tested) or 'the rule'}, n = {', '.join(map(str, ns))} seeds.")


@renders("paper_cpu")
def paper_cpu(path: Path) -> str:
    """The paper-cpu suite's claims (its report's claims.json) and how far the suite has run."""
    claims = load(path / "report" / "claims.json")
    results = load(path / "results.json")
    seeds = sorted({cell["labels"]["seed"] for cell in results["cells"].values()})
    note = paragraph(f"{results['cells_done']} of {results['cells_total']} cells done (seeds {', '.join(seeds)}). "
                     f"{_units_note(claims)} Rule: {claims['rule']}")
    cmd = "sharpvision reproduce paper-cpu --out benchmarks/results/paper_cpu && sharpvision report " \
          "benchmarks/results/paper_cpu"
    return f"{claims_table(claims)}\n\n{note}\n\n" + _suite_source(path, cmd)


def _suite_source(path: Path, cmd: str) -> str:
    """The closing line of a suite's block, with the device and torch its first finished cell recorded."""
    summary = load(sorted((path / "cells").glob("*/result.json"))[0])["summary"]
    return source(path, cmd, summary["device"], summary["torch"])


def _table(path: Path, name: str) -> dict[str, Any]:
    """A suite's table (``sharpvision report DIR`` writes ``DIR/tables/NAME.json``)."""
    file = path / "tables" / f"{name}.json"
    if not file.is_file():
        raise ValueError(f"{file}: missing; run sharpvision report {path}")
    return load(file)


def _rows_at(path: Path, name: str, **labels: str) -> list[dict[str, Any]]:
    """The rows of a suite's table whose labels include ``labels``."""
    return [r for r in _table(path, name)["rows"] if all(r["labels"].get(k) == v for k, v in labels.items())]


def _ms(cell: dict[str, Any] | None, signed: bool = False) -> str:
    """mean +- std of a table's cell (``{mean, std, n}``, sharpvision.stats.mean_std); the mean alone for one seed."""
    if cell is None or cell["mean"] is None:
        return "-"
    text = f"{cell['mean']:+.1f}" if signed else f"{cell['mean']:.1f}"
    return f"{text} +- {cell['std']:.1f}" if cell["std"] is not None else text


def _noise_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """label_noise table rows, by noise level: noise, seeds, test AdamW, test SAM, SAM's gain paired by seed, seeds
    SAM better, train AdamW, train SAM (accuracies in %)."""
    return [[f"{float(r['labels']['data.label_noise']):.0%}", str(len(r["seeds"])), _ms(r["test_vanilla"]),
             _ms(r["test_sam"]), _ms(r["gain"], signed=True), f"{r['sam_better_seeds']}/{len(r['seeds'])}",
             _ms(r["train_vanilla"]), _ms(r["train_sam"])]
            for r in sorted(rows, key=lambda r: float(r["labels"]["data.label_noise"]))]


@renders("paper_cpu:noise")
def paper_cpu_noise(path: Path) -> str:
    """Foret et al.'s label-noise table from the paper-cpu suite's label_noise table: clean test accuracy and train
    accuracy on the noisy labels (memorisation), AdamW and SAM, SAM's gain paired by seed (the suite's seeds share
    the initialisation and the noisy labels)."""
    rows = [row[:5] + row[6:] for row in _noise_rows(_rows_at(path, "label_noise", model="vit",
                                                              **{"data.fraction": "0.04"}))]
    note = paragraph("paper-cpu's noise grid: `vit_micro` on 2,352 Fashion-MNIST images (a stratified 4%) with that "
                     "share of training labels replaced by another class at random, 40 epochs, AdamW or SAM (rho "
                     "0.02, the ViT's rho chosen on clean validation accuracy); test accuracy on the clean 10,000 "
                     "test images at the last epoch, train accuracy on the noisy labels. Mean +- std over seeds; "
                     "SAM's gain paired by seed.")
    cmd = "sharpvision reproduce paper-cpu --out benchmarks/results/paper_cpu"
    header = ["label noise", "seeds", "test AdamW (%)", "test SAM (%)", "SAM - AdamW (points)", "train AdamW (%)",
              "train SAM (%)"]
    return f"{table(header, rows)}\n\n{note}\n\n" + _suite_source(path, cmd)


@renders("noise_families_cpu")
def noise_families(path: Path) -> str:
    """Foret et al.'s label-noise table for the other families: the noise_families_cpu suite's label_noise table, with
    paper-cpu's Table 2 rows (the same recipe and seeds) as the 0% row. Only the levels with cells are shown."""
    clean = {"data.fraction": "0.04", "data.label_noise": "0.0"}
    rows = [[f"`{model}_micro`", *row] for model in ("mixer", "resnet", "convnext")
            for row in _noise_rows(_rows_at(RESULTS / "paper_cpu", "label_noise", model=model, **clean)
                                   + _rows_at(path, "label_noise", model=model))]
    note = paragraph("noise_families_cpu: the micro Mixer, ResNet and ConvNeXt on paper-cpu's pool (2,352 "
                     "Fashion-MNIST images) with that share of training labels replaced by another class at random, "
                     "40 epochs, AdamW or SAM at the family's paper-cpu rho (Mixer and ResNet 0.2, ConvNeXt 0.02, "
                     "chosen on clean validation accuracy); the 0% rows are paper-cpu's Table 2 cells. Test accuracy "
                     "on the clean 10,000 test images at the last epoch, train accuracy on the noisy labels. Mean +- "
                     "std over seeds; SAM's gain paired by seed.")
    cmd = "sharpvision reproduce noise-families-cpu --out benchmarks/results/noise_families_cpu"
    header = ["model", "label noise", "seeds", "test AdamW (%)", "test SAM (%)", "SAM - AdamW (points)",
              "seeds SAM better", "train AdamW (%)", "train SAM (%)"]
    return f"{table(header, rows)}\n\n{note}\n\n" + _suite_source(path, cmd)


VARIANT_COST = {"sam": "sam", "sam5": "sam_every_5", "looksam5": "looksam_5", "gsam": "gsam"}  # sam_overhead's names


@renders("paper_cpu:variants")
def paper_cpu_variants(path: Path) -> str:
    """SAM's efficient variants where SAM helps (paper-cpu's variants table, ViT at 40% label noise): test accuracy,
    the share of SAM's gain each keeps, and its cost per step over AdamW's from sam_overhead_cpu.json (measured side
    by side in one process; the cells' own wall times ran beside other jobs)."""
    overhead = next(r["settings"] for r in load(RESULTS / "sam_overhead_cpu.json")["results"]
                    if r["model"] == "vit_micro")
    found = {r["setting"]: r for r in _rows_at(path, "variants", model="vit",
                                                **{"data.fraction": "0.04", "data.label_noise": "0.4"})}
    rows = []
    for setting in ("vanilla", *VARIANT_COST):
        r = found.get(setting, {"seeds": []})
        cost = overhead[VARIANT_COST[setting]]["ratio_of_medians"] if setting in VARIANT_COST else 1.0
        if not r["seeds"]:
            rows.append([setting, "0", "not run yet", "-", "-", f"{cost:.2f}"])
            continue
        kept = "-" if r["share_of_sam_gain"] is None else f"{100 * r['share_of_sam_gain']:.0f}%"
        rows.append([setting, str(len(r["seeds"])), _ms(r["test"]), _ms(r["gain"], signed=True), kept,
                     f"{cost:.2f}"])
    note = paragraph("paper-cpu's variants grid: `vit_micro`, 40% symmetric label noise (the regime where the "
                     "pilot saw SAM help), 2,352 images, 40 epochs; SAM-5 and LookSAM-5 take SAM's two passes on one "
                     "step in five, GSAM adds the surrogate gap. Gain: paired by seed, mean +- std. Share of the gain: "
                     "the variant's mean gain over AdamW / SAM's, on the same seeds. Cost: time per step over "
                     "AdamW's on `vit_micro`, batch 128, from `benchmarks/results/sam_overhead_cpu.json`. The goal: "
                     "a variant at no more than 1.35x AdamW's cost keeping at least 80% of SAM's gain.")
    cmd = ("sharpvision reproduce paper-cpu --out benchmarks/results/paper_cpu --only model=vit "
           "--only data.label_noise=0.4")
    header = ["setting", "seeds", "test accuracy (%)", "gain over AdamW (points)", "share of SAM's gain kept",
              "cost per step (AdamW = 1)"]
    return f"{table(header, rows)}\n\n{note}\n\n" + _suite_source(path, cmd)


@renders("checkpoint_cost")
def checkpoint_cost(path: Path) -> str:
    d = load(path)
    s = d["median_s"]
    text = paragraph(
        f"A `{d['model']}` checkpoint with its AdamW state ({d['params'] / 1e6:.0f}M parameters, "
        f"{d['checkpoint_mb']:.0f} MB) takes {s['ours_save']:.2f} s to write against {s['bare_save']:.2f} s for a "
        f"bare `torch.save` ({d['save_ratio']:.2f}x: the fsyncs and sha256 sums), and {s['ours_load']:.2f} s to read "
        f"and verify against {s['bare_load']:.2f} s ({d['load_ratio']:.2f}x); medians of {d['repeats']}.")
    return f"{text}\n\n{standard_source(path, d)}"


@renders("corruptions_speed")
def corruptions_speed(path: Path) -> str:
    """benchmarks/corruptions_speed.py: seconds per corruption, ours against the reference image by image."""
    d = load(path)
    ours, same, ref = d["ours_28px_table_s"], d["ours_imagenet_table_s"], d["reference_extrapolated_s"]
    rows = [[f"`{name}`", f"{ours[name]:.2f}", f"{same[name]:.2f}", f"{ref[name]:.1f}",
             f"{ref[name] / same[name]:.0f}x"] for name in ours]
    rows.append(["all 75", f"{d['ours_28px_table_total_s']:.1f}", f"{d['ours_imagenet_table_total_s']:.1f}",
                 f"{d['reference_extrapolated_total_s']:.0f}", f"{d['speedup_vs_reference_same_constants']:.1f}x"])
    header = ["corruption (5 severities)", "ours, 28px table (s)", "ours, imagenet table (s)",
              f"reference (s, from {d['reference_timed_on']} images)", "speed-up"]
    text = paragraph(f"{d['n']:,} Fashion-MNIST test images at {d['img_size']} px, batches of {d['batch_size']}; the "
                     "speed-up compares like with like (the imagenet constants on both sides).")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("sam_memory")
def sam_memory(path: Path) -> str:
    """benchmarks/sam_memory.py: peak tensor memory of a SAM step against its base step."""
    d = load(path)
    rows = [[f"`{name}`", f"{r['base_peak_mb']:.1f}", f"{r['sam_peak_mb']:.1f}", f"{r['ratio']:.3f}x",
             f"{r['weights_mb']:.2f}", f"{r['extra_mb']:.2f}", f"{r['extra_beyond_weights_and_bn_stats_bytes']:,}"]
            for name, r in d["models"].items()]
    header = ["model", "AdamW step (MB)", "SAM step (MB)", "SAM / AdamW", "weights (MB)", "SAM's extra (MB)",
              "extra beyond weights + BN statistics (bytes)"]
    text = paragraph(f"Peak tensor memory of one training step (the trainer's step, batch {d['batch']}, 28 px, "
                     "AdamW, clipping on). SAM's extra is one copy of the weights (the point it restores), plus the "
                     "BatchNorm statistics kept so its second pass does not update them, plus a few KiB that do not "
                     "grow with the model (the RNG state kept to replay dropout masks, the first pass's outputs).")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


def _mean_or_ms(cell: dict[str, float], n: int, digits: int = 1) -> str:
    """mean +- std over seeds, or the one value when n = 1."""
    return f"{cell['mean']:.{digits}f}" if n == 1 else mean_std(cell, digits)


@renders("prune")
def prune_table(path: Path) -> str:
    """studies/prune_table.py: accuracy lost by pruning, AdamW against SAM models."""
    d = load(path)
    seeds, rows = d["seeds"], []
    for family, t in d["table"].items():
        first = d["sources"][f"{family}/vanilla/seed{seeds[0]}"]
        half = first["pruned"]["activity@0.5"]
        row = [f"`{family}_micro`", " / ".join(_mean_or_ms(t["test_accuracy_pct"][s], len(seeds))
                                                for s in ("vanilla", "sam"))]
        for key in ("activity@0.25", "activity@0.5", "activity@0.75", "magnitude@0.5"):
            r = t["drops"][key]
            p_value = f", p {r['paired_t_p']:.2f}" if r["paired_t_p"] is not None else ""
            row.append(f"{_mean_or_ms(r['drop_vanilla'], r['n'])} / {_mean_or_ms(r['drop_sam'], r['n'])}{p_value}")
        row.append(f"{half['params'] / first['params']:.2f} / {half['flops'] / first['flops']:.2f}")
        rows.append(row)
    header = ["model", "test accuracy AdamW / SAM (%)", "drop at 25% by activity, AdamW / SAM (points)",
              "at 50%", "at 75%", "at 50% by magnitude", "params / FLOPs kept at 50%"]
    text = paragraph(f"paper-cpu's Table 2 models, seeds {', '.join(map(str, seeds))} (n = {len(seeds)} per cell); "
                     f"every hidden width cut by the share given, ranked by activity on {d['sample']:,} training "
                     "images or by weight magnitude, no fine-tuning; test accuracy on all 10,000 test images. A "
                     "drop is the accuracy before minus after, in points; with n > 1, mean +- std and the paired "
                     "t-test's p (SAM against AdamW, decided before the runs).")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("transfer")
def transfer_table(path: Path) -> str:
    """studies/transfer_table.py: probe and fine-tune accuracy from AdamW and SAM sources."""
    d = load(path)
    rows = []
    for key, r in d["table"].items():
        transfer, model, mode = key.split("/")
        rows.append([transfer, f"`{model}_micro`", mode, _mean_or_ms({k: 100 * v for k, v in r["vanilla"].items()},
                                                                     r["n"]),
                     _mean_or_ms({k: 100 * v for k, v in r["sam"].items()}, r["n"]),
                     _mean_or_ms({k: 100 * v for k, v in r["sam_minus_vanilla"].items()}, r["n"]),
                     f"{r['sam_better_seeds']}/{r['n']}", _t_p(r)])
    header = ["transfer", "model", "mode", "from AdamW (%)", "from SAM (%)", "SAM - AdamW (points)",
              "seeds SAM better", "paired t-test p"]
    text = paragraph(f"Test accuracy after a linear probe or a full fine-tune (AdamW, 30 epochs, no SAM, the same "
                     f"recipe for every source), seeds {', '.join(map(str, d['seeds']))}. "
                     + " ".join(about for name, about in (
                         ("digits", "digits: scikit-learn's digits (1,198 training, 599 test images, resized to 28 "
                                    "px) from the paper-cpu Table 2 sources."),
                         ("split", "split: Fashion-MNIST classes 5-9 from sources pre-trained on classes 0-4."))
                                if any(k.startswith(name + "/") for k in d["table"])))
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


def _t_p(r: dict) -> str:
    """A paired t-test's p for a table cell, or why there is none (benchmarks/common.py: paired_t_p)."""
    if r["paired_t_p"] is not None:
        return f"{r['paired_t_p']:.2f}"
    return "n/a (n = 1)" if r["n"] < 2 else "n/a (no spread)"


def _p(p: float) -> str:
    """A p-value as prose: below 0.001 the float's digits say nothing (a perfect rank correlation gives 0)."""
    return "p < 0.001" if p < 1e-3 else f"p = {p:.3g}"


def _eval_settings(path: Path) -> dict[str, Any]:
    """How a suite's cells were evaluated under corruption and PGD, as the first evaluated cell's files record it."""
    first = sorted((path / "cells").glob("*/run/eval/corruptions.json"))[0]
    c, a = load(first), load(first.with_name("attack_pgd_linf.json"))
    return {"corruption_subset": c["n"], "table": c["table"], "attack_subset": a["n"], "steps": a["steps"],
            "alpha": a["alpha"]}


def _eps(names: Any) -> list[str]:
    """The PGD L-inf radii among a table's figure names (``pgd_linf_accuracy@0.01`` -> ``0.01``), in order."""
    return [n.partition("@")[2] for n in names if n.startswith("pgd_linf_accuracy@")]


def _scaled(cell: dict[str, Any], scale: float, n: int) -> str:
    """mean +- std of a ``{mean, std}`` cell times ``scale``; the mean alone for one seed."""
    return _mean_or_ms({"mean": scale * cell["mean"], "std": scale * (cell["std"] or 0.0)}, n)


@renders("roadmap_cpu:roadmap")
def roadmap_table(path: Path) -> str:
    """The roadmap suite's ``roadmap`` table (sharpvision.experiments.tables.roadmap): per step, clean accuracy with
    AdamW and SAM, each step's change against the step it modifies, sharpness, robustness; and the tests fixed
    before the grid ran."""
    d = _table(path, "roadmap")
    s = _eval_settings(path)
    eps = _eps(d["tests"])

    def fig(row: dict[str, Any], metric: str, part: str | None = None, signed: bool = False,
            scale: float = 100) -> str:
        """mean +- std of ``row[metric][part]`` (``row[metric]`` itself without a part), scaled, "-" if absent."""
        if metric not in row:
            return "-"
        cell = row[metric][part] if part else row[metric]
        text = _scaled(cell, scale, row[metric]["n"])
        return f"+{text}" if signed and cell["mean"] >= 0 else text

    acc, robust = [], []
    for key, r in d["steps"].items():
        step = f"{key} {r['change']}"
        acc.append([step, f"{r['params'] / 1e6:.2f}M" if r.get("params") else "-", str(len(r["seeds"])),
                    fig(r, "test_accuracy", "vanilla"), fig(r, "test_accuracy", "sam"),
                    fig(r, "test_accuracy", "sam_minus_vanilla", signed=True),
                    fig(r, "change_vanilla", signed=True), fig(r, "change_sam", signed=True)])
        robust.append([step, *(f"{fig(r, m, 'vanilla', scale=k)} / {fig(r, m, 'sam', scale=k)}" for m, k in (
            ("lambda_max", 1), ("mean_corruption_accuracy", 100), *((f"pgd_linf_accuracy@{e}", 100) for e in eps)))])
    t = d["tests"]
    lines = [f"{d['cells_done']} of {d['cells_total']} cells done; mean +- std over seeds, SAM's gain and each "
             f"step's change paired by seed (the change is against the step it modifies: the one before, except "
             f"GELU, which continues from kernel 7)."]
    if "sam_gain" in t:
        g, tr = t["sam_gain"], t["gain_trend"]
        lines.append(f"Tests over steps (one observation per step, two-sided, alpha 0.05, fixed before the runs): "
                     f"SAM's gain over {g['n']} steps {100 * g['mean']:+.2f} +- {100 * g['std']:.2f} points, "
                     f"one-sample t {_p(g['t_p'])}; its trend along the roadmap, Spearman {tr['spearman']:+.2f} "
                     f"({_p(tr['p'])}).")
    if "same_steps_help" in t:
        h = t["same_steps_help"]
        flips = ", ".join(f"{i:02d}" for i in h["sign_flips"]) or "none"
        lines.append(f"Do the same steps help with SAM? Spearman of the steps' changes, AdamW against SAM, "
                     f"{h['spearman']:+.2f} ({_p(h['p'])}, n = {h['n']}); steps whose change flips sign: "
                     f"{flips}.")
    for m, label in (("lambda_max", "lambda_max"), ("mean_corruption_accuracy", "mean corruption accuracy"),
                     *((f"pgd_linf_accuracy@{e}", f"PGD accuracy at eps {e}") for e in eps)):
        if m in t:
            g, c = t[m]["sam_gain"], t[m]["clean_ranks_it"]
            scale, unit = (1, "") if m == "lambda_max" else (100, " points")
            lines.append(f"{label}: SAM minus AdamW {scale * g['mean']:+.2f} +- {scale * g['std']:.2f}{unit} "
                         f"(t {_p(g['t_p'])}, n = {g['n']}); AdamW's clean accuracy against it across steps, "
                         f"Spearman {c['spearman']:+.2f} ({_p(c['p'])}).")
    lines.append(f"Robustness: the 15 corruptions x 5 severities of the {s['table']} table on the first "
                 f"{s['corruption_subset']:,} test images, PGD-{s['steps']} (L-inf, random start, step {s['alpha']}, "
                 f"eps in pixel units of [0, 1]) on the first {s['attack_subset']:,}.")
    header_acc = ["step", "params", "seeds", "test AdamW (%)", "test SAM (%)", "SAM - AdamW (points)",
                  "change AdamW (points)", "change SAM (points)"]
    header_rob = ["step", "lambda_max AdamW / SAM", "mean corruption acc. (%)",
                  *(f"PGD-{s['steps']} eps {e} (%)" for e in eps)]
    cmd = ("python studies/robustness_table.py benchmarks/results/roadmap_cpu --only setting=vanilla --only "
           f"setting=sam --corruption-subset {s['corruption_subset']} --attack-subset {s['attack_subset']} "
           "--no-mnist-c && sharpvision report benchmarks/results/roadmap_cpu")
    return (f"{table(header_acc, acc)}\n\n{table(header_rob, robust)}\n\n"
            + "\n\n".join(paragraph(x) for x in lines) + "\n\n" + _suite_source(path, cmd))


@renders("paper_cpu:robustness")
def robustness_table(path: Path) -> str:
    """paper-cpu's ``robustness`` table (sharpvision.experiments.tables.robustness): clean, corruption and PGD
    accuracy of the evaluated cells with and without SAM, and the corruption claim as the suite's claims.json
    judges it."""
    rows = _table(path, "robustness")["rows"]
    s = _eval_settings(path)
    eps = _eps(rows[0]["vanilla"]) if rows else []
    metrics = ["corruption_clean_accuracy", "mean_corruption_accuracy", *(f"pgd_linf_accuracy@{e}" for e in eps),
               "mnist_c_mean_accuracy"]
    out = []
    for r in rows:
        pair = [r["vanilla"], r["sam"]]
        cells = [" / ".join(_scaled(g[m], 100, g["n"]) for g in pair) if all(m in g for g in pair) else "-"
                 for m in metrics]
        gains = [100 * r["sam_minus_vanilla"][m] for m in metrics[:2]]
        out.append([f"`{r['labels']['model']}_micro`", " / ".join(str(g["n"]) for g in pair), *cells,
                    f"{gains[0]:+.1f} / {gains[1]:+.1f}"])
    header = ["model", "seeds AdamW / SAM", "clean accuracy AdamW / SAM (%)", "mean corruption accuracy", *(
        f"PGD-{s['steps']} L-inf eps {e}" for e in eps), "MNIST-C mean", "SAM's gain clean / corrupted (points)"]
    claim = next(c for c in load(path / "report" / "claims.json")["claims"] if c["id"] == "corruption_gain")
    text = paragraph(f"paper-cpu's Table 2 cells evaluated so far (mean +- std over the seeds counted). Clean and "
                     f"corruption accuracy on the first {s['corruption_subset']:,} test images, the 15 corruptions x "
                     f"5 severities of the {s['table']} table averaged, and MNIST-C's 15; PGD-{s['steps']} (L-inf, "
                     f"random start, step {s['alpha']}, eps in pixel units of [0, 1]) on the first "
                     f"{s['attack_subset']:,}. SAM's gain: SAM's mean minus AdamW's. The claim, as the suite's "
                     f"claims.json judges it (the gains paired by seed, 95% intervals, p < 0.05): {claim['claim']}: "
                     f"**{claim['verdict']}** ({claim['ours']}).")
    cmd = "python studies/robustness_table.py benchmarks/results/paper_cpu"
    return f"{table(header, out)}\n\n{text}\n\n" + _suite_source(path, cmd)


@renders("contrastive")
def contrastive_table(path: Path) -> str:
    """studies/contrastive_table.py: SimCLR pre-training of the micro ViT with and without SAM."""
    d = load(path)
    rows = []
    for metric, label in (("probe_test_accuracy", "linear probe"), ("knn_test_accuracy", "kNN (k = 20)")):
        r = d["table"][metric]
        rows.append([label, *(_mean_or_ms({k: 100 * v for k, v in r[s].items()}, r["n"])
                              for s in ("vanilla", "sam", "sam_minus_vanilla")),
                     f"{r['sam_better_seeds']}/{r['n']}", _t_p(r)])
    cost = {s: d["pretrain_wall_time_s"][s]["mean"] for s in ("vanilla", "sam")}
    header = ["test accuracy", "AdamW pre-training (%)", "SAM pre-training (%)", "SAM - AdamW (points)",
              "seeds SAM better", "paired t-test p"]
    text = paragraph(f"`vit_micro` pre-trained with SimCLR (no labels) on 2,352 Fashion-MNIST images, seeds "
                     f"{', '.join(map(str, d['seeds']))}, then probed linearly on the same images' labels (backbone "
                     f"frozen, 30 epochs); accuracy on all 10,000 test images. Pre-training took "
                     f"{cost['vanilla'] / 60:.0f} min with AdamW and {cost['sam'] / 60:.0f} min with SAM per seed.")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("ntk_speed")
def ntk_speed(path: Path) -> str:
    """benchmarks/ntk_speed.py: seconds for the NTK condition number at n inputs in float64."""
    d = load(path)
    rows = [[f"`{name}`", f"{r['params']:,}", f"{r['seconds_one_thread']:.1f}", f"{r['seconds_all_threads']:.1f}",
             f"{r['threads_speedup']:.2f}x", f"{r['full_n32_seconds']:.1f}", sci(r['kappa'])]
            for name, r in d["models"].items()]
    header = ["model", "parameters", "1 thread (s)", f"{d['threads']} threads (s)", "threads speed-up",
              "per-class kernel, n = 32 (s)", "kappa"]
    text = paragraph(f"The NTK's condition number at initialisation on n = {d['n']} inputs in {d['dtype']} (one "
                     f"row per sample, the summed logits' gradient: Table 1's figure), per-sample gradients in "
                     f"chunks of {d['chunk']}; medians of {d['repeats']}, the thread counts alternated in one "
                     "process. The per-class kernel (10 rows per sample) is `analyze`'s second figure.")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("step_levers")
def step_levers(path: Path) -> str:
    """benchmarks/step_levers.py: where a SAM step's CPU time goes and what compile, bf16 and NHWC buy."""
    d = load(path)
    levers = ["compile", "bf16", "channels_last"]
    rows = [[f"`{name}`", f"{r['images_per_s']['eager']:.0f}",
             *(f"{r['speedup_vs_eager'][lever]:.2f}x" if lever in r["speedup_vs_eager"] else "-" for lever in levers),
             ", ".join(f"{o['op'].removeprefix('aten::')} {100 * o['share']:.0f}%" for o in r["profile"]["top"][:5])]
            for name, r in d["models"].items()]
    header = ["model", "eager fp32 (images/s)", "torch.compile", "bf16 autocast", "channels_last",
              "top operators (share of the step's CPU time)"]
    text = paragraph(f"The trainer's SAM step ({d['sam']}, batch {d['batch']}), medians of {d['rounds']} rounds of "
                     f"{d['steps']} steps, the levers interleaved in one process; speed-ups against eager fp32. The "
                     "profile is of the eager step.")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("hvp_levers")
def hvp_levers(path: Path) -> str:
    """benchmarks/hvp_levers.py: seconds per Hessian-vector product by each way, and products to accuracy."""
    d = load(path)
    ways = list(dict.fromkeys(w for r in d["models"].values() for w in [*r["seconds_per_product"], *r["failed"]]))
    rows, steps_rows = [], []
    for name, r in d["models"].items():
        cells = []
        for w in ways:
            if w in r["failed"]:
                cells.append("fails")
            elif w not in r["seconds_per_product"]:
                cells.append("-")
            else:
                cells.append(f"{1e3 * r['seconds_per_product'][w]:.0f} ms"
                             + ("" if w == "kept graph" else f" ({r['relative_to_kept_graph'][w]:.2f}x)"))
        book = r["lanczos_bookkeeping_per_step_s"] / r["seconds_per_product"]["kept graph"]
        rows.append([f"`{name}`", *cells, f"{100 * book:.1f}%"])
        beyond = f"> {d['iters']}"
        steps_rows.append([f"`{name}`", *(f"{r[f'lanczos_steps_to_{a}'] or beyond} / "
                                          f"{r[f'lanczos_gradient_start_steps_to_{a}'] or beyond} / "
                                          f"{r[f'power_steps_to_{a}'] or beyond}" for a in ("0.005", "0.001")),
                           f"{r['ours_products_at_tol_1e-3']} ({100 * r['ours_error_at_tol_1e-3']:.2g}%)",
                           str(r["residual_rule_products_at_tol_1e-3"] or beyond)])
    header = ["model", *(f"{w} (per product)" for w in ways), "Lanczos bookkeeping per step"]
    failures = sorted({f"{w}: `{e}`" for r in d["models"].values() for w, e in r["failed"].items()})
    text = paragraph(f"One Hessian-vector product of the mean loss over {d['sample']} inputs at initialisation "
                     f"(eval mode, float32, math attention, one batch), medians of {d['rounds']} rounds with the "
                     "ways rotated in one process; in brackets, against the kept graph. "
                     + ("Fails: " + "; ".join(failures) + "." if failures else ""))
    steps_header = ["model", "products to 0.5%: Lanczos (Gaussian start) / Lanczos (gradient start) / power",
                    "to 0.1%", "ours at tol 1e-3: products (error)", "the residual rule at tol 1e-3: products"]
    steps_text = paragraph("Products to accuracy: the first step after which the estimate stays within 0.5% (0.1%) "
                           "of the converged top eigenvalue, all from the same Gaussian (the gradient start adds "
                           "the unit gradient to it); exact counts, not timings.")
    return (f"{table(header, rows)}\n\n{text}\n\n{table(steps_header, steps_rows)}\n\n{steps_text}\n\n"
            f"{standard_source(path, d)}")


@renders("convnext_vs_resnet")
def convnext_vs_resnet(path: Path) -> str:
    """studies/convnext_vs_resnet_attack.py: PGD accuracy of ConvNeXt and ResNet at equal clean accuracy."""
    d = load(path)
    rows = []
    for e, r in d["table"].items():
        rows.append(["clean" if e == "0" else f"PGD-{d['steps']} eps {e}",
                     *(_mean_or_ms({k: 100 * v for k, v in r[m].items()}, r["n"])
                       for m in ("convnext", "resnet", "convnext_minus_resnet")), _t_p(r)])
    seeds = d["seeds"].values()
    text = paragraph(
        "The ResNet is a re-run of its paper-cpu cell's recipe (same data, seed and schedule), stopped at the "
        "first epoch whose validation accuracy reaches the ConvNeXt's final one (epochs "
        + ", ".join(str(s["resnet_epoch"]) for s in seeds) + " of 40); the ConvNeXt is its cell. Accuracy on the first "
        f"{d['subset']:,} test images, PGD L-inf with random start, eps in pixel units; mean +- std over seeds "
        "and the paired t-test's p.")
    header = ["test accuracy (%)", "`convnext_micro`", "`resnet_micro` (matched)", "ConvNeXt - ResNet (points)",
              "paired t-test p"]
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


@renders("ntk_families")
def ntk_families(path: Path) -> str:
    d = load(path)
    ns = sorted({r["n"] for r in d["results"]})
    kappa = {(r["model"], r["n"]): r["kappa_median"] for r in d["results"]}
    params = {r["model"]: r["params"] for r in d["results"]}
    rows = [[f"`{m}` ({p / 1e6:.2f}M)", *(sci(kappa[m, n]) for n in ns)] for m, p in params.items()]
    zero_head = sorted({r["model"] for r in d["results"] if r["zero_initialized_head"]})
    first = d["results"][0]
    notes = [f"Median over {d['seeds']} initializations, {first['reduction']}-of-logits kernel in {first['dtype']}, "
             "Fashion-MNIST training images."]
    if {"vit_micro", "resnet_micro"} <= set(params):
        ratios = " and ".join(f"{kappa['vit_micro', n] / kappa['resnet_micro', n]:.0f}x at n={n}" for n in ns)
        notes.append(f"`vit_micro` over `resnet_micro`: {ratios}.")
    if zero_head:
        notes.append(f"Zero-initialized classifier (recorded in the JSON): {', '.join(f'`{m}`' for m in zero_head)}.")
    header = ["model", *(f"kappa, n={n}" for n in ns)]
    return f"{table(header, rows)}\n\n{paragraph(' '.join(notes))}\n\n{standard_source(path, d)}"


def _peer_at(row: dict[str, Any], tool: str) -> str:
    tol = row["fastest_within_accuracy"][tool]
    if tol is None:
        return "never within (" + ", ".join(f"{t}: {100 * c['rel_error_max']:.2g}%"
                                            for t, c in row["tools"][tool].items()) + ")"
    cell = row["tools"][tool][tol]
    products = f", {cell['products']} products" if cell["products"] else ""
    return f"tol {tol}: {cell['time_s_median']:.2f} s{products}, {100 * cell['rel_error_max']:.2g}%"


@renders("hessian_peers")
def hessian_peers(path: Path) -> str:
    d = load(path)
    ours, peer = list(d["results"][0]["tools"])
    rows, failures = [], set()
    for r in d["results"]:
        speed = r["speedup_at_equal_accuracy"]
        rows.append([r["model"], f"{r['reference']:.6g}", _peer_at(r, ours), _peer_at(r, peer),
                     "-" if speed is None else f"**{speed:.2f}x**"])
        failures |= {f"{tool}: `{e}`" for tool, e in r["failed_as_is"].items()}
    setting = paragraph(
        f"Sample of {d['sample']} images as one batch; each tool at every tolerance of "
        f"{', '.join(f'{t:g}' for t in d['tols'])} by its own rule, {d['repeats']} repeats side by side in one "
        f"process (order rotated), median times. Each tool is shown at its fastest tolerance whose value is within "
        f"{100 * d['accuracy']:g}% of eigsh in every repeat, with its time and largest error there; the last column "
        "is PyHessian's time there over ours.")
    footnote = paragraph("Failing as they are, and so run under our math-attention mode: " + "; ".join(sorted(failures))
                         + ".") if failures else ""
    header = ["model", "eigsh (reference)", ours, peer, "our speed over PyHessian's, equal accuracy"]
    return "\n\n".join(x for x in [setting, table(header, rows), footnote, standard_source(path, d)] if x)


@renders("analyze_costs")
def analyze_costs(path: Path) -> str:
    """benchmarks/analyze_costs.py: seconds per analyze piece, the first look's and everything's totals."""
    d = load(path)
    runs = d["runs"]
    names = list(dict.fromkeys(p for r in runs for p in r["pieces"]))
    first = {p for r in runs for p, c in r["pieces"].items() if c["first_look"]}

    def work(c: dict[str, Any]) -> str:
        names = {"matvecs": "products", "probes": "probes", "samples": "at most", "points": "points"}
        return ", ".join(f"{names[k]} {v}" if k == "samples" else f"{v} {names[k]}" for k, v in c.items()
                         if k in names)

    rows = [[f"`{p}`" + (" (first look)" if p in first else ""),
             *(f"{r['pieces'][p]['seconds']:.1f} s ({work(r['pieces'][p])})".replace(" ()", "")
               if p in r["pieces"] else "-" for r in runs)] for p in names]
    for label, key in (("**first look, wall (CPU)**", "first_look"), ("**--what all, wall (CPU)**", "all")):
        rows.append([label, *(f"**{r['times'][key]['wall_s']:.0f} s** ({r['times'][key]['cpu_s']:.0f} s)"
                              for r in runs)])
    header = ["piece", *(f"`{r['run']}` ({r['model']}, epoch {r['epoch']}, {r['train_examples']} training images, "
                         f"sample {r['sample']})" for r in runs)]
    loads = "; ".join(f"{r['run']} " + " -> ".join(f"{x:.1f}" for x in r["load_average_1min"]) for r in runs)
    text = paragraph(f"Seconds each piece's computation took (its JSON's `seconds`), in one process with "
                     f"{d['threads']} thread(s); the totals run from loading the checkpoint to the last figure, "
                     "`--what all` resuming the first look's pieces. The machine was shared: its 1-minute load "
                     f"average (2 cores) before, between and after: {loads}.")
    return f"{table(header, rows)}\n\n{text}\n\n{standard_source(path, d)}"


def _geometry_rows(base: dict[str, Any], sam: dict[str, Any]) -> list[list[str]]:
    def pair(get: Callable[[dict[str, Any]], float], fmt: str, ratio: bool = True) -> list[str]:
        a, b = get(base), get(sam)
        return [f"{a:{fmt}}", f"{b:{fmt}}", f"{b / a:.2f}" if ratio else ""]

    h, t = base["hessian"], base["trace"]
    plane = base["landscape"]["plane"]["settings"]
    noise = base["flatness"]
    return [
        [f"lambda_max (n={h['settings']['n']}; mean +- std over {len(h['sample_seeds'])} sample draws)",
         *(f"{r['hessian']['lambda_max_mean']:.1f} +- {r['hessian']['lambda_max_std']:.1f}" for r in (base, sam)),
         f"{sam['hessian']['lambda_max_mean'] / h['lambda_max_mean']:.2f}"],
        [f"Hessian trace (Hutch++, {t['samples']} products; +- stderr)",
         *(f"{r['trace']['trace']:.0f} +- {r['trace']['stderr']:.0f}" for r in (base, sam)),
         f"{sam['trace']['trace'] / t['trace']:.2f}"],
        [f"SAM sharpness L(w + rho g/\\|\\|g\\|\\|) - L(w), rho {base['sharpness']['sam']['settings']['rho']}",
         *pair(lambda r: r["sharpness"]["sam"]["sharpness"], ".3f")],
        [f"worst-case sharpness, \\|\\|e\\|\\| <= {base['sharpness']['worst_case']['settings']['rho']} "
         f"({base['sharpness']['worst_case']['steps']} ascent steps)",
         *pair(lambda r: r["sharpness"]["worst_case"]["sharpness"], ".3f")],
        [f"L(w + noise) - L(w), sigma {noise['sigma']} ({noise['draws']} draws)",
         *pair(lambda r: r["flatness"]["mean_loss_noisy"] - r["flatness"]["loss"], ".3f")],
        [f"mean loss over the {plane['steps']} x {plane['steps']} landscape plane",
         *pair(lambda r: r["landscape"]["plane"]["mean_loss"], ".2f")],
        ["training loss L(w) on the sample", *pair(lambda r: r["flatness"]["loss"], ".3f", ratio=False)],
        ["active neurons per block", *(" ".join(f"{v:.2f}" for v in r["sparsity"]["per_block"].values())
                                       for r in (base, sam)), ""],
        ["weight norm", *pair(lambda r: r["norms"]["total"], ".1f", ratio=False)],
        [f"NTK kappa at init (n={base['ntk']['at_init']['n']}, {base['ntk']['at_init']['reduction']} of logits, "
         f"{base['ntk']['at_init']['dtype']})", *(sci(r["ntk"]["at_init"]["kappa"]) for r in (base, sam)),
         "same init" if base["ntk"]["at_init"]["kappa"] == sam["ntk"]["at_init"]["kappa"] else ""],
    ]


@renders("geometry_demo")
def geometry(path: Path) -> str:
    """A ``sharpvision analyze --compare`` folder holding two runs: the first is the baseline, the second SAM."""
    compare = load(path / "compare.json")
    (base_name, base_c), (sam_name, sam_c) = compare["runs"].items()
    base, sam = ({p.stem: load(p) for p in (path / name).glob("*.json")} for name in (base_name, sam_name))
    rows = _geometry_rows(base, sam)
    by_block, sam_by_block = base["hessian"]["per_block"], sam["hessian"]["per_block"]
    blocks, blocks_sam = (" / ".join(f"{v:.1f}" for v in b.values()) for b in (by_block, sam_by_block))
    ratios = ", ".join(f"{k} {v / sam_by_block[k]:.1f}x" for k, v in by_block.items())
    per_block = paragraph(
        f"lambda_max per block ({', '.join(by_block)}): {base_name} {blocks}; {sam_name} "
        f"{blocks_sam}. {base_name} over {sam_name}: {ratios}; overall "
        f"{base['hessian']['lambda_max_mean'] / sam['hessian']['lambda_max_mean']:.1f}x.")
    devices = sorted({*base_c["devices"], *sam_c["devices"]})
    torches = sorted({str(r.get("torch", "not recorded")) for r in (*base.values(), *sam.values())})
    header = [f"`{base['hessian']['model']}`", f"`{base_name}`", f"`{sam_name}`", f"`{sam_name}` / `{base_name}`"]
    where = source(path, compare["command"], ", ".join(devices), ", ".join(torches))
    if (path / "README.md").exists():
        where += f"\n_How the piece files were made: `{(path / 'README.md').relative_to(ROOT)}`._"
    return "\n\n".join([table(header, rows), per_block, where])


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path in doc_files():
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(new)
    if check and stale:
        print(f"stale figures in {', '.join(stale)}: run make docs", file=sys.stderr)
        return 1
    print(f"figures: {'up to date' if not stale else 'rewrote ' + ', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
