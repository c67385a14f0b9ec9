"""Typed recipes: dataclasses, YAML files, dotted ``key=value`` overrides and validation.

Every field is checked when a recipe is loaded, so a typo or a bad value stops a run before it
costs compute, with an error that names the field (``optim.rho``), the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import types
import typing
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sharpvision.errors import SharpvisionError

MAX_SEED = 2**32 - 1  # numpy's limit
MAX_THREADS = 1024  # beyond any machine's cores; OpenMP fails to start far more (a crash, not an error)


class ConfigError(SharpvisionError, ValueError):
    """A recipe field, file or value is wrong; the message names the culprit."""


@dataclass
class ModelConfig:
    name: str = "vit_micro"
    drop_rate: float = 0.0  # dropout before the classifier (timm's drop_rate); in-block: kwargs.proj_drop_rate
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly over the blocks
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments for timm
    widths: dict[str, int] = field(default_factory=dict)  # hidden widths kept by pruning (sharpvision prune): name -> n

    def check(self) -> None:
        _range("model.drop_rate", self.drop_rate, 0.0, 1.0, hi_open=True)
        _range("model.drop_path_rate", self.drop_path_rate, 0.0, 1.0, hi_open=True)
        for name, width in self.widths.items():
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ConfigError(f"model.widths.{name}: {width!r} is not a width (an integer >= 1)")


@dataclass
class DataConfig:
    # digits: scikit-learn's bundled 8 x 8 handwritten digits (1,797 real images; a fixed stratified third is test)
    dataset: Literal["fashion_mnist", "cifar10", "cifar100", "digits", "folder"] = "fashion_mnist"
    root: str | None = None  # None: the dataset's default place (see sharpvision.data)
    download: bool = False  # CIFAR only: fetch through torchvision when missing
    img_size: int | None = None  # None: the dataset's native size (28 / 32 / 8 / 224)
    classes: tuple[int, ...] | None = None  # keep only these classes, relabelled 0..k-1 in this order; null: all
    fraction: float = 1.0  # stratified, seeded share of the training set (the paper's 1/2, 1/4, 1/10)
    label_noise: float = 0.0  # share of training labels replaced by a wrong class (label_noise_kind says which)
    label_noise_kind: Literal["symmetric", "pairflip"] = "symmetric"  # any other class / class c -> c + 1
    val_fraction: float = 0.0  # stratified share of the training set held out for validation
    augment: Literal["none", "basic", "strong"] = "basic"  # basic: crop+flip; strong: + RandAugment + Mixup
    hflip: bool = True  # horizontal flip in "basic" / "strong"
    rand_augment: str = "rand-m9-mstd0.5-inc1"  # timm RandAugment spec, "strong" only
    mixup: float = 0.8  # Mixup alpha, "strong" only (0 disables)
    cutmix: float = 0.0  # CutMix alpha, "strong" only (0 disables)
    batch_size: int = 128  # the global batch: under torchrun each of N workers takes batch_size / N
    eval_batch_size: int = 512
    num_workers: int = 0
    loader: Literal["auto", "device", "dataloader"] = "auto"  # auto: uint8 data on the GPU for in-memory sets
    subset_train: int | None = None  # cap on training examples after fraction/val split (smoke runs)
    subset_test: int | None = None  # cap on test examples (smoke runs)
    seed: int = 0  # seed of the fraction, label-noise and validation draws

    def check(self) -> None:
        _range("data.fraction", self.fraction, 0.0, 1.0, lo_open=True)
        _range("data.label_noise", self.label_noise, 0.0, 1.0, hi_open=True)
        if self.label_noise_kind == "pairflip" and self.label_noise >= 0.5:
            raise ConfigError(f"data.label_noise: {self.label_noise} with label_noise_kind 'pairflip' must be < 0.5 "
                              "(at 0.5 or more the flipped class c + 1 outnumbers the true one: nothing to learn)")
        _range("data.val_fraction", self.val_fraction, 0.0, 1.0, hi_open=True)
        _range("data.mixup", self.mixup, 0.0, None)
        _range("data.cutmix", self.cutmix, 0.0, None)
        for name in ("batch_size", "eval_batch_size"):
            _range(f"data.{name}", getattr(self, name), 1, None)
        _range("data.num_workers", self.num_workers, 0, None)
        _range("data.seed", self.seed, 0, MAX_SEED)
        if self.img_size is not None:
            _range("data.img_size", self.img_size, 8, None)
        for name in ("subset_train", "subset_test"):
            if getattr(self, name) is not None:
                _range(f"data.{name}", getattr(self, name), 1, None)
        if self.classes is not None:
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes) or min(self.classes) < 0:
                raise ConfigError(f"data.classes: {list(self.classes)} must list at least two different class "
                                  "indices >= 0")
        if self.dataset == "folder" and not self.root:
            raise ConfigError("data.root: dataset 'folder' needs data.root, a folder with train/ and val/ "
                              "(ImageNet layout)")


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd", "lamb"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)  # adamw / lamb
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    no_decay_1d: bool = True  # no weight decay on biases, norms, position embeddings (ndim <= 1)
    sam: bool = False  # wrap the base optimizer in SAM
    rho: float = 0.05  # SAM neighbourhood radius
    adaptive: bool = False  # ASAM: elementwise (|w| + eta) scaling of the perturbation
    eta: float = 0.01  # ASAM's offset (Kwon et al.), so zero-valued weights are perturbed too
    sam_every: int = 1  # SAM-k: the two passes every k steps, one pass on the others (cost about 1 + 1/k)
    variant: Literal["sam", "gsam", "looksam"] = "sam"  # descent direction; looksam needs sam_every > 1
    alpha: float | None = None  # gsam / looksam weight of the extra direction; null: 0.4 (gsam), 0.7 (looksam)
    rho_min: float | None = None  # rho follows the lr from rho (at peak lr) down to rho_min (GSAM); null: constant
    clip_grad_norm: float | None = 1.0  # global-norm clip of the (descent) gradient; null: off
    m: int | None = None  # m-sharpness: examples per perturbation; null: each worker's batch (batch_size / workers)

    def check(self) -> None:
        _range("optim.lr", self.lr, 0.0, None, lo_open=True)
        _range("optim.weight_decay", self.weight_decay, 0.0, None)
        _range("optim.momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _range("optim.rho", self.rho, 0.0, None)
        _range("optim.eta", self.eta, 0.0, None)
        _range("optim.sam_every", self.sam_every, 1, None)
        self._check_variant()
        for i, b in enumerate(self.betas):
            _range(f"optim.betas[{i}]", b, 0.0, 1.0, hi_open=True)
        if self.clip_grad_norm is not None:
            _range("optim.clip_grad_norm", self.clip_grad_norm, 0.0, None, lo_open=True)
        if self.m is not None:
            if not self.sam:
                raise ConfigError(f"optim.m: {self.m} needs optim.sam=true (it sets the batch SAM perturbs on)")
            _range("optim.m", self.m, 1, None)
        if self.nesterov and self.name != "sgd":
            raise ConfigError(f"optim.nesterov: only for optim.name=sgd, not {self.name!r}")

    def _check_variant(self) -> None:
        """The fields that shape SAM's step need SAM, and the variant that uses them."""
        if self.sam_every > 1 and not self.sam:
            raise ConfigError(f"optim.sam_every: {self.sam_every} needs optim.sam=true (it spaces SAM's steps)")
        for name in ("variant", "alpha", "rho_min"):
            if getattr(self, name) not in ("sam", None) and not self.sam:
                raise ConfigError(f"optim.{name}: {getattr(self, name)!r} needs optim.sam=true")
        if self.variant == "looksam" and self.sam_every == 1:
            raise ConfigError("optim.variant: 'looksam' reuses a direction between SAM steps, so it needs "
                              "optim.sam_every = k > 1 (Liu et al. use 5)")
        if self.alpha is not None:
            if self.variant == "sam":
                raise ConfigError("optim.alpha: only for optim.variant 'gsam' or 'looksam'")
            _range("optim.alpha", self.alpha, 0.0, None)
        if self.rho_min is not None:
            _range("optim.rho_min", self.rho_min, 0.0, self.rho)


@dataclass
class ScheduleConfig:
    epochs: int = 10
    warmup_epochs: float = 1.0  # linear warmup from 0, in epochs (fractions allowed)
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0  # final lr as a share of optim.lr

    def check(self) -> None:
        _range("schedule.epochs", self.epochs, 1, None)
        _range("schedule.warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))
        _range("schedule.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)


@dataclass
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    label_smoothing: float = 0.0
    ema_decay: float | None = None  # EMA of weights (e.g. 0.9999); null: off
    eval_every: int = 1  # epochs between test evaluations (the last epoch is always evaluated)
    log_every: int = 20  # steps between progress-bar / TensorBoard updates (one host sync each)
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    threads: int | None = None  # torch CPU threads; null: torch's default
    compile: bool = False  # torch.compile the model for training (both SAM passes share one graph)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    channels_last: bool | None = None  # NHWC memory format; null: on for CNNs on CUDA
    peak_tflops: float | None = None  # the device's peak for MFU when it is not in sharpvision's table
    lambda_max_every: int | None = None  # epochs between Hessian lambda_max estimates during training; null: off
    lambda_max_sample: int = 512  # fixed training examples (no augmentation) for that estimate
    matched_loss: float | None = None  # also estimate lambda_max once, at the first epoch whose mean training loss
    #   falls below this level, and keep that epoch's weights (run/matched/): sharpness compared at equal loss
    checkpoint_every: int | None = None  # also checkpoint every this many steps inside an epoch; null: epoch ends only
    keep_checkpoints: int = 2  # newest checkpoints kept in the run directory (older ones are deleted)
    dist_timeout_s: float = 1800.0  # under torchrun: longest wait to join the group or in a collective; a worker
    #   that waits longer fails, and torchrun --max-restarts starts the group again (which then resumes)

    def check(self) -> None:
        if self.precision == "fp16":
            raise ConfigError("train.precision: 'fp16' is refused: fp16 needs a GradScaler, and a GradScaler can "
                              "unscale only once per step while SAM takes two backward passes; use 'bf16' "
                              "(same speed on GPUs with bf16, no loss scaling needed) or 'fp32'")
        _range("train.label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True)
        if self.ema_decay is not None:
            _range("train.ema_decay", self.ema_decay, 0.0, 1.0, lo_open=True, hi_open=True)
        _range("train.eval_every", self.eval_every, 1, None)
        _range("train.log_every", self.log_every, 1, None)
        _range("train.lambda_max_sample", self.lambda_max_sample, 1, None)
        if self.matched_loss is not None:
            _range("train.matched_loss", self.matched_loss, 0.0, None, lo_open=True)
        if self.peak_tflops is not None:
            _range("train.peak_tflops", self.peak_tflops, 0.0, None, lo_open=True)
        _range("train.keep_checkpoints", self.keep_checkpoints, 1, None)
        _range("train.dist_timeout_s", self.dist_timeout_s, 0.0, None, lo_open=True)
        if self.threads is not None:
            _range("train.threads", self.threads, 1, MAX_THREADS)
        for name in ("max_steps_per_epoch", "lambda_max_every", "checkpoint_every"):
            if getattr(self, name) is not None:
                _range(f"train.{name}", getattr(self, name), 1, None)


@dataclass
class AdvConfig:
    """Adversarial training: every step first crafts a PGD attack on its batch against the current weights, then
    takes its usual step (plain, SAM or a SAM variant) on the attacked images. eps and alpha are in pixel units."""

    method: Literal["none", "pgd"] = "none"  # pgd: PGD-AT (Madry et al. 2018); none: train on the batches as given
    eps: float = 8 / 255  # radius of the threat ball, pixel units on [0, 1] images (8/255 CIFAR; ~0.1 for 28 px grey)
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 10  # PGD steps per training step (each one forward + input-gradient backward)
    alpha: float | None = None  # PGD step size; null: 2.5 * eps / steps (2/255 at eps 8/255 and 10 steps)
    random_start: bool = True  # start from a uniform point of the ball (global torch RNG, which checkpoints keep)

    def check(self) -> None:
        _range("adv.eps", self.eps, 0.0, None)
        if self.norm == "linf":  # pixels lie in [0, 1]: the ball of radius 1 already holds every image
            _range("adv.eps", self.eps, 0.0, 1.0)
        _range("adv.steps", self.steps, 1, None)
        if self.alpha is not None:
            _range("adv.alpha", self.alpha, 0.0, None, lo_open=True)


@dataclass
class FinetuneConfig:
    """Start from trained weights instead of a fresh initialisation (transfer learning, Chen et al. Sec. 4)."""

    source: str | None = None  # a run directory, a checkpoint folder, or a timm weights file (.safetensors / .pth)
    mode: Literal["full", "linear"] = "full"  # linear: train the classifier only, the rest frozen in eval mode
    head: Literal["new", "keep"] = "new"  # new: a fresh classifier for this data's classes; keep: the source's
    ema: bool = False  # take the source run's EMA weights (or a timm file's state_dict_ema) instead of its weights

    def check(self) -> None:
        if self.source is None and (self.head == "keep" or self.ema):
            field_ = "finetune.head: 'keep'" if self.head == "keep" else "finetune.ema: true"
            raise ConfigError(f"{field_} needs finetune.source (the weights to start from)")


@dataclass
class ContrastiveConfig:
    """SimCLR-style pre-training (Chen et al. 2020), the task ``task: contrastive`` trains: two augmented views of
    each image, a projection head, the NT-Xent loss over the batch's 2B views (Chen, Hsieh, Gong 2022 pre-train
    ViTs this way with and without SAM)."""

    temperature: float = 0.5  # NT-Xent's tau (SimCLR's CIFAR-10 setting at batch 512)
    proj_dim: int = 64  # output of the projection head; its hidden layer is the backbone's feature width
    crop_min: float = 0.2  # smallest area share of the random resized crop of each view
    jitter: float = 0.4  # brightness / contrast (/ saturation on RGB) jitter strength, applied with p = 0.8
    knn_k: int = 20  # neighbours of the kNN accuracy that stands in for test accuracy during pre-training

    def check(self) -> None:
        _range("contrastive.temperature", self.temperature, 0.0, None, lo_open=True)
        _range("contrastive.proj_dim", self.proj_dim, 1, None)
        _range("contrastive.crop_min", self.crop_min, 0.0, 1.0, lo_open=True)
        _range("contrastive.jitter", self.jitter, 0.0, None)
        _range("contrastive.knn_k", self.knn_k, 1, None)


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    task: Literal["classify", "contrastive"] = "classify"  # contrastive: SimCLR pre-training (the contrastive section)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)

    def check(self) -> None:
        if not self.name.strip() or self.name in (".", "..") or "/" in self.name or "\\" in self.name:
            raise ConfigError(f"name: {self.name!r} is not a run name (the default run directory is runs/<name>); "
                              "use a non-empty name without path separators")
        _range("seed", self.seed, 0, MAX_SEED)
        for f in dataclasses.fields(self):
            sub = getattr(self, f.name)
            if dataclasses.is_dataclass(sub):
                sub.check()
        if self.optim.m is not None and self.data.batch_size % self.optim.m:
            raise ConfigError(f"optim.m: {self.optim.m} must divide data.batch_size={self.data.batch_size} (the batch "
                              "is split into perturbation groups of m examples)")
        mixes = self.data.augment == "strong" and (self.data.mixup > 0 or self.data.cutmix > 0)
        if self.task == "contrastive":
            self._check_contrastive(mixes)
        if self.adv.method != "none" and mixes:
            raise ConfigError(f"adv.method: {self.adv.method!r} cannot train on Mixup/CutMix batches (the attack "
                              "needs each image's own label, a mixed batch has soft targets); set data.mixup=0 "
                              "data.cutmix=0, or data.augment=basic")

    def _check_contrastive(self, mixes: bool) -> None:
        """What a contrastive run cannot combine with, named: each needs class labels it does not train on."""
        refused = [("data.augment: 'strong' with Mixup/CutMix", mixes, "mixing needs class labels"),
                   ("adv.method", self.adv.method != "none", "the attack needs class labels"),
                   ("train.lambda_max_every", self.train.lambda_max_every is not None,
                    "lambda_max is of the classification loss"),
                   ("train.matched_loss", self.train.matched_loss is not None,
                    "lambda_max is of the classification loss"),
                   ("optim.m", self.optim.m is not None, "a view's negatives are the whole batch's views"),
                   ("finetune.mode: 'linear'", self.finetune.mode == "linear", "there is no classifier to probe")]
        for name, bad, why in refused:
            if bad:
                raise ConfigError(f"{name} cannot be used with task: contrastive ({why})")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    """Tuples to lists, so the dict dumps to plain YAML/JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _range(name: str, value: float, lo: float | None, hi: float | None, lo_open: bool = False,
           hi_open: bool = False) -> None:
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ConfigError(f"{name}: {value!r} is out of range, expected a value in {span}")


_PLAIN = {bool: "true or false", int: "an integer", str: "a string"}


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(name, tp, value)
    if value is None:
        raise ConfigError(f"{name}: null is not allowed")
    if origin is Literal:
        return _coerce_literal(name, tp, value)
    if origin is tuple:
        return _coerce_tuple(name, typing.get_args(tp), value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if tp in _PLAIN:
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):  # bool is an int subclass
            raise ConfigError(f"{name}: expected {_PLAIN[tp]}, got {value!r}")
        return value
    if tp is float:
        return _coerce_float(name, value)
    raise TypeError(f"unsupported annotation {tp} for {name}")  # a bug in this module, not in the recipe


def _coerce_union(name: str, tp: Any, value: Any) -> Any:
    """``X | None`` and the like: null where allowed, else the first member that accepts the value."""
    args = typing.get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{name}: null is not allowed")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(name, arg, value)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{name}: {value!r} matches none of {tp}")


def _coerce_tuple(name: str, args: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    """``tuple[float, float]`` (that many values) or ``tuple[int, ...]`` (any number)."""
    if len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(value))
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise ConfigError(f"{name}: expected a list of {len(args)} values, got {value!r}")
    return tuple(_coerce(f"{name}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))


def _coerce_literal(name: str, tp: Any, value: Any) -> Any:
    allowed = typing.get_args(tp)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(repr, allowed))}{hint}")
    return value


def _coerce_float(name: str, value: Any) -> float:
    if isinstance(value, str):  # PyYAML (YAML 1.1) reads 5e-3 and 1e4 as strings; accept what float() reads
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float's range
        raise ConfigError(f"{name}: expected a finite number, got an integer of {len(str(value))} digits") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'recipe'}: expected a mapping of fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f"; known: {', '.join(names)}"
            raise ConfigError(f"{dotted}: unknown field{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, tp, value)
    return cls(**kwargs)


# old field name -> new one; recipes and run directories that use the old name keep working, with a warning
RENAMED = {"train.sharpness_every": "train.lambda_max_every", "train.sharpness_sample": "train.lambda_max_sample"}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every renamed field under its new name (see :data:`RENAMED`); giving both is an error."""
    out = _plain(data)
    for old, new in RENAMED.items():
        section, old_key = old.split(".")
        node = out.get(section)
        if not isinstance(node, dict) or old_key not in node:
            continue
        new_key = new.split(".")[1]
        if new_key in node:
            raise ConfigError(f"{old}: renamed to {new}, and both are given; keep {new}")
        warnings.warn(f"{old} is deprecated: it is now {new} (the old name still works for now)", FutureWarning,
                      stacklevel=3)
        node[new_key] = node.pop(old_key)
    return out


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a saved recipe) with every field it lacks at its default: a run saved before a field existed ran
    as the default does (a new field's default keeps the old behaviour), so it compares equal to today's recipe."""
    out = Config().to_dict()
    for key, value in _plain(data).items():
        out[key] = {**out[key], **value} if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """A validated Config from a nested dict (fields missing from ``data`` take their defaults)."""
    cfg = _build(Config, upgrade(data) if isinstance(data, dict) else data, "")
    cfg.check()
    return cfg


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict; values are parsed as YAML (``0.1``, ``true``, ``[1, 2]``)."""
    out = _plain(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.rho=0.1")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except (yaml.YAMLError, ValueError, TypeError) as e:  # ValueError: a bad tagged scalar (!!float ;)
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
        node = out
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def shipped_recipes() -> Path:
    """The folder of the recipes that come with the package (``configs/`` in a checkout links to it)."""
    return Path(str(importlib.resources.files("sharpvision") / "configs"))


def find_recipe(path: str | Path) -> Path:
    """``path`` itself when it exists; else the shipped recipe of that name, so ``configs/fmnist/vit_sam.yaml``
    and ``fmnist/vit_sam.yaml`` work from any folder and from an installed package."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    shipped = shipped_recipes().joinpath(*parts) if parts else None
    return shipped if shipped is not None and shipped.is_file() else path


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (a file, or a shipped recipe's name: see :func:`find_recipe`), apply overrides and
    validate every field."""
    path = find_recipe(path)
    if path.is_dir():
        raise ConfigError(f"recipe {path}: is a directory; give a YAML file, e.g. configs/tiny.yaml")
    if not path.is_file():
        raise ConfigError(f"recipe {path}: no such file")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise ConfigError(f"recipe {path}: not a text file (a YAML recipe is UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path}: malformed YAML: {e}") from None
    except (ValueError, TypeError, IndexError) as e:  # PyYAML's constructors, on a bad tagged scalar (!!float ;)
        raise ConfigError(f"recipe {path}: malformed YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"recipe {path}: nested too deeply to be a recipe") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return from_dict(apply_overrides(data, overrides or []))
    except ConfigError as e:
        raise ConfigError(f"recipe {path}: {e}") from None
    except RecursionError:  # an alias that contains itself (``a: &x {b: *x}``)
        raise ConfigError(f"recipe {path}: nested too deeply (a YAML alias inside itself?)") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique; PyYAML keeps
    the last silently, so a second ``optim:`` section would drop the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the base class refuses it with its own message
                break
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def dump(cfg: Config, path: str | Path) -> None:
    """Write the resolved recipe; renamed into place, so a reader (another worker, a killed run) sees all or none."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    tmp.replace(path)


def diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} ({a!r} -> {b!r})"]
