"""Property-based tests of the recipe parser: round trips, overrides, and refusal of anything out of range."""

import copy
import dataclasses
import json
import math
import tempfile
import types
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sharpvision import config
from sharpvision.config import MAX_SEED, MAX_THREADS, Config, ConfigError

SETTINGS = settings(max_examples=60, deadline=None)
HINTS = typing.get_type_hints(Config)
SECTIONS = {name: tp for name, tp in HINTS.items() if dataclasses.is_dataclass(tp)}
FIELDS = {name for name, tp in HINTS.items() if not dataclasses.is_dataclass(tp)} | {
    f"{section}.{f.name}" for section, tp in SECTIONS.items() for f in dataclasses.fields(tp)}


def hint(key: str):
    section, _, name = key.rpartition(".")
    return typing.get_type_hints(SECTIONS[section])[name] if section else HINTS[name]


def kinds(key: str) -> tuple:
    tp = hint(key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def choices(key: str) -> tuple[str, ...]:
    return typing.get_args(hint(key))


def exists(key: str) -> bool:
    return key in FIELDS


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
UNIT = st.floats(0, 1, exclude_max=True)
NONNEG = st.floats(0, 1e9)
POSITIVE = st.floats(0, 1e9, exclude_min=True)
COUNT = st.integers(1, 2**40)
FINITE = {"allow_nan": False, "allow_infinity": False}
SCALARS = st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.floats(**FINITE) | TEXT

INDEPENDENT = {
    "name": TEXT.filter(lambda t: t.strip() and t not in (".", "..") and "/" not in t and "\\" not in t),
    "seed": st.integers(0, MAX_SEED),
    "model.name": TEXT,
    "model.drop_rate": UNIT,
    "model.drop_path_rate": UNIT,
    "model.kwargs": st.dictionaries(TEXT, SCALARS, max_size=3),
    "model.widths": st.dictionaries(TEXT, st.integers(1, 4096), max_size=3),
    "data.classes": st.none() | st.lists(st.integers(0, 1000), min_size=2, max_size=5, unique=True).map(tuple),
    "finetune.mode": st.sampled_from(choices("finetune.mode")),
    "contrastive.temperature": POSITIVE,
    "contrastive.proj_dim": COUNT,
    "contrastive.crop_min": st.floats(0, 1, exclude_min=True),
    "contrastive.jitter": NONNEG,
    "contrastive.knn_k": COUNT,
    "data.download": st.booleans(),
    "data.img_size": st.none() | st.integers(8, 4096),
    "data.fraction": st.floats(0, 1, exclude_min=True),
    "data.label_noise": UNIT,
    "data.val_fraction": UNIT,
    "data.augment": st.sampled_from(choices("data.augment")),
    "data.hflip": st.booleans(),
    "data.rand_augment": TEXT,
    "data.mixup": NONNEG,
    "data.cutmix": NONNEG,
    "data.eval_batch_size": COUNT,
    "data.num_workers": st.integers(0, 256),
    "data.loader": st.sampled_from(choices("data.loader")),
    "data.subset_train": st.none() | COUNT,
    "data.subset_test": st.none() | COUNT,
    "data.seed": st.integers(0, MAX_SEED),
    "optim.lr": POSITIVE,
    "optim.weight_decay": NONNEG,
    "optim.betas": st.tuples(UNIT, UNIT),
    "optim.momentum": UNIT,
    "optim.no_decay_1d": st.booleans(),
    "optim.adaptive": st.booleans(),
    "optim.eta": NONNEG,
    "optim.clip_grad_norm": st.none() | POSITIVE,
    "schedule.decay": st.sampled_from(choices("schedule.decay")),
    "schedule.min_lr_ratio": st.floats(0, 1),
    "train.device": st.sampled_from(choices("train.device")),
    "train.precision": st.sampled_from([p for p in choices("train.precision") if p != "fp16"]),
    "train.label_smoothing": UNIT,
    "train.ema_decay": st.none() | st.floats(0, 1, exclude_min=True, exclude_max=True),
    "train.eval_every": COUNT,
    "train.log_every": COUNT,
    "train.max_steps_per_epoch": st.none() | COUNT,
    "train.threads": st.none() | st.integers(1, 64),
    "train.compile": st.booleans(),
    "train.compile_mode": st.sampled_from(choices("train.compile_mode")),
    "train.channels_last": st.none() | st.booleans(),
    "train.peak_tflops": st.none() | POSITIVE,
    "train.lambda_max_every": st.none() | COUNT,
    "train.lambda_max_sample": COUNT,
    "train.matched_loss": st.none() | POSITIVE,
    "train.checkpoint_every": st.none() | COUNT,
    "train.keep_checkpoints": st.integers(1, 100),
    "train.dist_timeout_s": POSITIVE,
    "adv.eps": st.floats(0, 1),  # under linf (the default norm) eps above 1 is refused: pixels lie in [0, 1]
    "adv.norm": st.sampled_from(choices("adv.norm")),
    "adv.steps": COUNT,
    "adv.alpha": st.none() | POSITIVE,
    "adv.random_start": st.booleans(),
}
INDEPENDENT = {key: strategy for key, strategy in INDEPENDENT.items() if exists(key)}


def nest(flat: dict) -> dict:
    out = {}
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = list(value) if isinstance(value, tuple) else value
    return out


def flatten(data: dict) -> dict:
    flat = {}
    for key, value in data.items():
        if key in SECTIONS:
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


@st.composite
def valid_dicts(draw) -> dict:
    flat = {key: draw(strategy) for key, strategy in INDEPENDENT.items()}
    sam = draw(st.booleans())
    name = draw(st.sampled_from(choices("optim.name")))
    sam_every = draw(st.integers(1, 10)) if sam else 1
    variant = draw(st.sampled_from(["sam", "gsam", *(["looksam"] if sam_every > 1 else [])])) if sam else "sam"
    rho = draw(NONNEG)
    batch = draw(st.integers(1, 4096))
    epochs = draw(st.integers(1, 1000))
    dataset = draw(st.sampled_from(choices("data.dataset")))
    root = draw(st.none() | TEXT)
    mixes = flat["data.augment"] == "strong" and (flat["data.mixup"] > 0 or flat["data.cutmix"] > 0)
    source = draw(st.none() | TEXT)
    flat |= {
        "optim.name": name,
        "optim.nesterov": draw(st.booleans()) if name == "sgd" else False,
        "optim.sam": sam,
        "optim.rho": rho,
        "optim.sam_every": sam_every,
        "optim.variant": variant,
        "optim.alpha": draw(st.none() | NONNEG) if variant != "sam" else None,
        "optim.rho_min": draw(st.none() | st.floats(0, rho)) if sam else None,
        "optim.m": draw(st.none() | st.sampled_from([d for d in range(1, batch + 1) if batch % d == 0])) if sam
        else None,
        "data.batch_size": batch,
        "data.dataset": dataset,
        "data.root": root if root or dataset != "folder" else "/data/imagenet",
        "schedule.epochs": epochs,
        "schedule.warmup_epochs": draw(st.floats(0, epochs)),
        "adv.method": "none" if mixes else draw(st.sampled_from(choices("adv.method"))),  # no attack on mixed batches
        "finetune.source": source,
        "finetune.head": draw(st.sampled_from(choices("finetune.head"))) if source is not None else "new",
        "finetune.ema": draw(st.booleans()) if source is not None else False,  # both need a source
        "task": "classify",  # a contrastive draw below, where nothing it refuses was drawn
        # pair flipping above half the labels leaves nothing to learn: refused
        "data.label_noise_kind": "symmetric" if flat["data.label_noise"] >= 0.5 else
        draw(st.sampled_from(choices("data.label_noise_kind"))),
    }
    if contrastive_ok(flat):
        flat["task"] = draw(st.sampled_from(choices("task")))
    return nest({key: value for key, value in flat.items() if exists(key)})


def contrastive_ok(flat: dict) -> bool:
    """Whether nothing that task: contrastive refuses is set (Mixup, an attack, lambda_max, m, a linear probe)."""
    mixes = flat.get("data.augment") == "strong" and (flat.get("data.mixup", 0.8) > 0 or flat.get("data.cutmix", 0) > 0)
    return not mixes and flat.get("adv.method", "none") == "none" and flat.get("train.lambda_max_every") is None \
        and flat.get("train.matched_loss") is None and flat.get("optim.m") is None \
        and flat.get("finetune.mode", "full") != "linear"


def value_of(cfg: Config, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def render(value) -> str:
    return yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True, width=math.inf)


def load_text(text: str) -> Config:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(text)
        try:
            return config.load(path)
        except ConfigError as e:
            assert str(e).startswith(f"recipe {path}: "), str(e)
            raise


@SETTINGS
@given(valid_dicts())
def test_generator_sets_every_field(data: dict) -> None:
    assert set(flatten(data)) == FIELDS


@SETTINGS
@given(valid_dicts())
def test_valid_dict_builds_keeps_every_value_and_round_trips(data: dict) -> None:
    original = copy.deepcopy(data)
    cfg = config.from_dict(data)
    assert data == original
    plain = flatten(cfg.to_dict())
    for key, value in flatten(data).items():
        assert plain[key] == value, key
    assert config.from_dict(cfg.to_dict()) == cfg


@SETTINGS
@given(valid_dicts())
def test_yaml_dump_then_load_is_identity(data: dict) -> None:
    cfg = config.from_dict(data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        config.dump(cfg, path)
        assert yaml.safe_load(path.read_text()) == cfg.to_dict()
        assert config.load(path) == cfg


@SETTINGS
@given(valid_dicts())
def test_json_round_trip_is_identity(data: dict) -> None:
    cfg = config.from_dict(data)
    assert config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def coupled_ok(raw: dict) -> bool:
    """False when the only fault of ``raw`` is one of the cross-field rules an override of a single "independent"
    field can break: a PGD attack on Mixup batches, pair-flip noise at a rate of 0.5 or more, what a contrastive
    run refuses."""
    cfg = raw.get("data", {})
    mixes = cfg.get("augment") == "strong" and (cfg.get("mixup", 0.8) > 0 or cfg.get("cutmix", 0) > 0)
    attack = raw.get("adv", {}).get("method", "none") != "none"
    pairflip = cfg.get("label_noise_kind") == "pairflip" and cfg.get("label_noise", 0.0) >= 0.5
    contrastive = raw.get("task") == "contrastive" and not contrastive_ok(flatten(raw))
    return not (mixes and attack) and not pairflip and not contrastive


@SETTINGS
@given(valid_dicts(), st.data())
def test_override_sets_exactly_that_field(data: dict, more) -> None:
    base = config.from_dict(data)
    key = more.draw(st.sampled_from(sorted(INDEPENDENT)))
    value = more.draw(INDEPENDENT[key])
    before = base.to_dict()
    untouched = copy.deepcopy(before)
    out = config.apply_overrides(before, [f"{key}={render(value)}"])
    assert before == untouched
    assume(coupled_ok(out))
    cfg = config.from_dict(out)
    assert value_of(cfg, key) == value
    changed = {k for k, v in flatten(cfg.to_dict()).items() if flatten(before)[k] != v}
    assert changed <= {key}


@SETTINGS
@given(valid_dicts(), st.data())
def test_overrides_apply_in_order_and_the_last_wins(data: dict, more) -> None:
    key = more.draw(st.sampled_from(sorted(INDEPENDENT)))
    first, last = more.draw(INDEPENDENT[key]), more.draw(INDEPENDENT[key])
    both = config.apply_overrides(data, [f"{key}={render(first)}", f"{key}={render(last)}"])
    assert both == config.apply_overrides(data, [f"{key}={render(last)}"])
    assume(coupled_ok(both))
    assert value_of(config.from_dict(both), key) == last


KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=".="), min_size=1, max_size=15)


@SETTINGS
@given(st.sampled_from(["", *SECTIONS]), KEY_TEXT)
def test_unknown_override_key_is_named(section: str, key: str) -> None:
    names = {f.name for f in dataclasses.fields(SECTIONS[section] if section else Config)}
    assume(key not in names)
    dotted = f"{section}.{key}" if section else key
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides({}, [f"{dotted}=1"]))
    assert str(info.value).startswith(f"{dotted}: unknown field")


@SETTINGS
@given(st.sampled_from(["", *SECTIONS]), st.text(max_size=15), SCALARS)
def test_unknown_key_in_a_dict_is_named(section: str, key: str, value) -> None:
    names = {f.name for f in dataclasses.fields(SECTIONS[section] if section else Config)}
    assume(key not in names)
    data = {section: {key: value}} if section else {key: value}
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    assert str(info.value).startswith(f"{section + '.' if section else ''}{key}: unknown field")


RANGES = {
    "model.drop_rate": (0.0, 1.0, False, True, {}),
    "model.drop_path_rate": (0.0, 1.0, False, True, {}),
    "data.fraction": (0.0, 1.0, True, False, {}),
    "data.label_noise": (0.0, 1.0, False, True, {}),
    "data.val_fraction": (0.0, 1.0, False, True, {}),
    "data.mixup": (0.0, None, False, False, {}),
    "data.cutmix": (0.0, None, False, False, {}),
    "optim.lr": (0.0, None, True, False, {}),
    "optim.weight_decay": (0.0, None, False, False, {}),
    "optim.momentum": (0.0, 1.0, False, True, {}),
    "optim.rho": (0.0, None, False, False, {}),
    "optim.eta": (0.0, None, False, False, {}),
    "optim.alpha": (0.0, None, False, False, {"optim.sam": True, "optim.variant": "gsam"}),
    "optim.rho_min": (0.0, 0.05, False, False, {"optim.sam": True, "optim.rho": 0.05}),
    "optim.clip_grad_norm": (0.0, None, True, False, {}),
    "schedule.warmup_epochs": (0.0, 10.0, False, False, {"schedule.epochs": 10}),
    "schedule.min_lr_ratio": (0.0, 1.0, False, False, {}),
    "train.label_smoothing": (0.0, 1.0, False, True, {}),
    "train.ema_decay": (0.0, 1.0, True, True, {}),
    "train.peak_tflops": (0.0, None, True, False, {}),
    "train.dist_timeout_s": (0.0, None, True, False, {}),
    "adv.eps": (0.0, None, False, False, {}),
    "adv.alpha": (0.0, None, True, False, {}),
}


@st.composite
def out_of_range_floats(draw) -> tuple[str, float, dict]:
    key = draw(st.sampled_from(sorted(RANGES)))
    lo, hi, lo_open, hi_open, context = RANGES[key]
    below = st.floats(max_value=lo, exclude_max=not lo_open, **FINITE)
    above = st.floats(min_value=hi, exclude_min=not hi_open, **FINITE) if hi is not None else st.nothing()
    return key, draw(below | above), context


@SETTINGS
@given(out_of_range_floats())
def test_out_of_range_float_is_refused_naming_the_field(case: tuple[str, float, dict]) -> None:
    key, value, context = case
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({**context, key: value}))
    assert str(info.value).startswith(f"{key}: {value!r} is out of range")


@SETTINGS
@given(st.integers(0, 1), st.floats(**FINITE).filter(lambda b: not 0 <= b < 1))
def test_out_of_range_beta_is_refused_naming_its_index(index: int, value: float) -> None:
    betas = [0.9, 0.999]
    betas[index] = value
    with pytest.raises(ConfigError) as info:
        config.from_dict({"optim": {"betas": betas}})
    assert str(info.value).startswith(f"optim.betas[{index}]: {value!r} is out of range")


FLOAT_FIELDS = sorted(key for key in FIELDS if float in kinds(key))


@SETTINGS
@given(st.sampled_from(FLOAT_FIELDS), st.sampled_from([math.nan, math.inf, -math.inf, ".nan", ".inf", "-.inf",
                                                        "nan", "inf", "1e999", "-1e400"]))
def test_non_finite_float_is_refused_naming_the_field(key: str, value) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides({}, [f"{key}={value}"]))
    assert str(info.value).startswith(f"{key}: expected a finite number")


@SETTINGS
@given(st.sampled_from(FLOAT_FIELDS), st.integers(-(2**1000), 2**1000))
def test_integer_for_a_float_field_is_accepted_as_float_or_refused(key: str, value: int) -> None:
    try:
        cfg = config.from_dict(config.apply_overrides({"optim": {"sam": True, "variant": "gsam"}}, [f"{key}={value}"]))
    except ConfigError as e:
        assert str(e).startswith(f"{key}: ")
    else:
        assert value_of(cfg, key) == float(value) and isinstance(value_of(cfg, key), float)


@SETTINGS
@given(st.sampled_from(FLOAT_FIELDS), st.integers(2**1024, 2**1100) | st.integers(-(2**1100), -(2**1024)))
def test_integer_beyond_float_range_is_refused_naming_the_field(key: str, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides({}, [f"{key}={value}"]))
    assert str(info.value).startswith(f"{key}: ")


INT_RANGES = {
    "seed": (0, MAX_SEED, {}),
    "data.seed": (0, MAX_SEED, {}),
    "data.batch_size": (1, None, {}),
    "data.eval_batch_size": (1, None, {}),
    "data.num_workers": (0, None, {}),
    "data.img_size": (8, None, {}),
    "data.subset_train": (1, None, {}),
    "data.subset_test": (1, None, {}),
    "optim.sam_every": (1, None, {}),
    "optim.m": (1, None, {"optim.sam": True}),
    "schedule.epochs": (1, None, {"schedule.warmup_epochs": 0}),
    "train.eval_every": (1, None, {}),
    "train.log_every": (1, None, {}),
    "train.lambda_max_sample": (1, None, {}),
    "train.keep_checkpoints": (1, None, {}),
    "train.max_steps_per_epoch": (1, None, {}),
    "train.threads": (1, MAX_THREADS, {}),
    "train.lambda_max_every": (1, None, {}),
    "train.checkpoint_every": (1, None, {}),
    "adv.steps": (1, None, {}),
}
INT_RANGES = {key: spec for key, spec in INT_RANGES.items() if exists(key)}


@st.composite
def out_of_range_ints(draw) -> tuple[str, int, dict]:
    key = draw(st.sampled_from(sorted(INT_RANGES)))
    lo, hi, context = INT_RANGES[key]
    value = draw(st.integers(max_value=lo - 1) | (st.integers(min_value=hi + 1) if hi is not None else st.nothing()))
    return key, value, context


@SETTINGS
@given(out_of_range_ints())
def test_out_of_range_integer_is_refused_naming_the_field(case: tuple[str, int, dict]) -> None:
    key, value, context = case
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides(nest(context), [f"{key}={value}"]))
    assert str(info.value).startswith(f"{key}: {value} is out of range")


INT_FIELDS = sorted(key for key in FIELDS if int in kinds(key))
BOOL_FIELDS = sorted(key for key in FIELDS if bool in kinds(key))
STR_FIELDS = sorted(key for key in FIELDS if str in kinds(key))
LITERAL_FIELDS = sorted(key for key in FIELDS if typing.get_origin(hint(key)) is typing.Literal)


@SETTINGS
@given(st.sampled_from(INT_FIELDS), st.booleans() | st.floats() | st.sampled_from(["1", "-3", "1e3", "0x10"]) | TEXT)
def test_non_integer_for_an_integer_field_is_refused(key: str, value) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({key: value}))
    assert str(info.value).startswith(f"{key}: expected an integer, got {value!r}")


@SETTINGS
@given(st.sampled_from(BOOL_FIELDS), st.integers() | st.floats() | TEXT | st.lists(st.booleans(), max_size=2))
def test_non_bool_for_a_bool_field_is_refused(key: str, value) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({key: value}))
    assert str(info.value).startswith(f"{key}: expected true or false, got {value!r}")


@SETTINGS
@given(st.sampled_from(STR_FIELDS), st.booleans() | st.integers() | st.floats() | st.lists(TEXT, max_size=2))
def test_non_string_for_a_string_field_is_refused(key: str, value) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({key: value}))
    assert str(info.value).startswith(f"{key}: expected a string, got {value!r}")


@SETTINGS
@given(st.sampled_from(FLOAT_FIELDS), st.booleans() | st.lists(st.floats(), max_size=2) | st.dictionaries(TEXT, TEXT))
def test_non_number_for_a_float_field_is_refused(key: str, value) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({key: value}))
    assert str(info.value).startswith(f"{key}: expected a number, got {value!r}")


@SETTINGS
@given(st.sampled_from(LITERAL_FIELDS), TEXT | st.integers())
def test_unknown_choice_is_refused_listing_the_choices(key: str, value) -> None:
    assume(value not in choices(key))
    with pytest.raises(ConfigError) as info:
        config.from_dict(nest({key: value}))
    assert str(info.value).startswith(f"{key}: {value!r} is not one of {', '.join(map(repr, choices(key)))}")


NON_OPTIONAL = sorted(key for key in FIELDS if type(None) not in typing.get_args(hint(key)))


@SETTINGS
@given(st.sampled_from(NON_OPTIONAL))
def test_null_for_a_required_field_is_refused(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(config.apply_overrides({}, [f"{key}=null"]))
    assert str(info.value) == f"{key}: null is not allowed"


@SETTINGS
@given(st.text(max_size=30).filter(lambda s: "=" not in s))
def test_override_without_equals_is_refused(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.apply_overrides({}, [item])
    assert str(info.value).startswith(f"override {item!r}: expected key=value")


@SETTINGS
@given(st.lists(st.sampled_from(["", "optim", "rho", "data"]), min_size=1, max_size=4).filter(lambda p: "" in p),
       st.text(max_size=10))
def test_override_with_an_empty_key_part_is_refused(parts: list[str], raw: str) -> None:
    item = f"{'.'.join(parts)}={raw}"
    with pytest.raises(ConfigError) as info:
        config.apply_overrides({}, [item])
    assert str(info.value).startswith(f"override {item!r}: expected key=value")


YAML_VALUES = st.sampled_from(["0", "1", "-1", "0.5", "1e-3", "2.0e-3", "1e999", "-.inf", ".nan", "true", "no", "null",
                               "~", "''", "abc", "vit_micro", "[0.9, 0.999]", "[1]", "{a: 1}", "{}", "[]", "2020-01-01",
                               "0x1f", "1_000", "!!str 3", "!!float 1", "&a 1", "*a", "fashion_mnist", "sgd", "cosine",
                               "strong", "4294967296", "64", "", "- 1", "|", "%"])
MUTATIONS = st.sampled_from(["", " ", "\t", ":", "-", "[", "{", "\n", "  ", "#", "'", "&", "*", "!", "?"])


@st.composite
def yamlish(draw) -> str:
    lines = []
    for top in draw(st.lists(st.sampled_from([*sorted(SECTIONS), "name", "seed", "modle", "x"]), max_size=5)):
        if top in SECTIONS:
            lines.append(f"{top}:")
            names = [f.name for f in dataclasses.fields(SECTIONS[top])]
            for name in draw(st.lists(st.sampled_from([*names, names[0][:-1], "kwargs"]), max_size=4)):
                lines.append(f"  {name}: {draw(YAML_VALUES)}")
        else:
            lines.append(f"{top}: {draw(YAML_VALUES)}")
    text = "\n".join(lines) + "\n"
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(MUTATIONS) + text[at + draw(st.integers(0, 2)):]
    return text


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80) | yamlish())
def test_any_text_recipe_loads_or_raises_config_error(text: str) -> None:
    try:
        cfg = load_text(text)
    except ConfigError:
        return
    assert isinstance(cfg, Config)
    cfg.check()


@SETTINGS
@given(st.integers(1, 60))
def test_moderately_nested_recipe_is_refused_as_config_error(depth: int) -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_text("[" * depth + "]" * depth)
