"""What every config field may hold, in one table, and the command-line argument types.

:data:`FIELDS` gives each field (dotted as ``key=value`` overrides spell it) a rule
(config/rules.py). A rule turns the text of an override into a value of the field's type
and says whether a value is allowed; :func:`check_config` runs every rule, plus the few
rules that relate two fields (:data:`RELATIONS`), when a config is resolved, so a bad value
stops a script before it reads data or weights, with one line naming the field, the value
and what is allowed. A field that is not in the table is a bug in the config code, not a
user error.

The argparse types at the end (:func:`positive_int`, :func:`probability`, ...) are what
the scripts' own options use for the same purpose.
"""

import argparse

from tools.errors import ConfigError

from .rules import Bool, Choice, Int, Interval, Items, Number, Optional, Text

# The preprocessing styles tools/data/preprocess.py implements (see its docstring).
PREPROCESS_STYLES = ("mmcv", "ppdet_static", "ppdet2")
_NONE = ("none", "null")


PROBABILITY = Number(0, 1)
# SOLOv2's heads use GroupNorm with 32 groups (model/layers.py ConvNorm), so the channels
# of every normalised conv divide by 32.
GROUP_NORM = dict(low=32, multiple_of=32, why="GroupNorm has 32 groups")
# Inputs are padded to multiples of 32; a test or training size below that is all padding.
SIZE = Int(32)
# The five levels the head predicts on (P2 halved, P3, P4, P5, P6 resized; model/head.py).
LEVELS = 5
TEXT = Text()
PATH_OR_NONE = Optional(TEXT)

FIELDS = {
    # ---------------------------------------------------------------- model
    "num_classes": Int(1),
    "backbone_variant": Choice("b", "d"),
    "backbone_dcn_stages": Items(Int(2, 5), unique=True, noun="residual stages in 2..5"),
    "backbone_frozen_stages": Int(0, 4, why="0 = none, 1 = stem + res2, ... 4 = up to res5"),
    "backbone_norm": Choice("affine", "frozen", "train"),
    "fpn_channels": Int(1),
    "head_stacked_convs": Int(1),
    "head_seg_feat_channels": Int(**GROUP_NORM),
    "head_dcn_convs": Items(Int(0), unique=True, noun="tower conv indices >= 0"),
    "head_dcn_bias": Bool(),
    "mask_feat_channels": Int(**GROUP_NORM),
    "mask_feat_mid_channels": Int(**GROUP_NORM),
    "mask_feat_dcn": Bool(),
    "num_grids": Items(Int(1), length=LEVELS, noun="grid sizes >= 1 (one per level)"),
    "strides": Items(Int(1), length=LEVELS, noun="strides >= 1 (one per level)"),
    "scale_ranges": Items(Interval(), length=LEVELS),
    "sigma": Number(0, 1, low_open=True),
    "drop_block": Bool(),
    "dice_average": Choice("all", "nonempty"),
    # ---------------------------------------------------------------- weights
    "model_path": PATH_OR_NONE,
    # ---------------------------------------------------------------- data
    "pixel_mean": Items(Number(), length=3, noun="numbers (R, G, B)"),
    "pixel_std": Items(Number(0, low_open=True), length=3, noun="numbers > 0 (R, G, B)"),
    "preprocess": Choice("auto", *PREPROCESS_STYLES),
    "native_preprocess": Choice(*PREPROCESS_STYLES),
    "test_size": Items(SIZE, length=2, noun="integers >= 32 (short side, long-side cap)"),
    "train_sizes": Items(SIZE, min_length=1, noun="short sides >= 32"),
    "train_max_size": SIZE,
    "train_color_distort": Bool(),
    "train_random_crop": Bool(),
    "train_path": TEXT,
    "train_pre_path": TEXT,
    # None: training runs without periodic evaluation (eval.py then has nothing to read).
    "val_path": PATH_OR_NONE,
    "val_pre_path": TEXT,
    "test_path": TEXT,
    "test_pre_path": TEXT,
    "classes_path": TEXT,
    # ---------------------------------------------------------------- train_cfg
    "train_cfg.model_path": PATH_OR_NONE,
    "train_cfg.batch_size": Int(1),
    "train_cfg.base_lr": Number(0, low_open=True),
    "train_cfg.base_batch_size": Int(1),
    "train_cfg.scale_lr": Bool(),
    "train_cfg.momentum": Number(0, 1, high_open=True),
    "train_cfg.weight_decay": Number(0),
    "train_cfg.warmup_iters": Int(0),
    "train_cfg.warmup_ratio": PROBABILITY,
    "train_cfg.max_iters": Int(1),
    "train_cfg.lr_milestones": Items(Int(1), noun="iterations >= 1, increasing"),
    "train_cfg.lr_gamma": Number(0, low_open=True),
    "train_cfg.grad_clip": Optional(Number(0, low_open=True)),
    "train_cfg.backbone_lr_mult": Items(Number(0), length=4, noun="numbers >= 0 (res2..res5)"),
    "train_cfg.backbone_norm_decay": Bool(),
    "train_cfg.ema": Bool(),
    "train_cfg.ema_decay": Number(0, 1, high_open=True),
    "train_cfg.save_iter": Int(1),
    "train_cfg.keep_checkpoints": Int(0, why="0 keeps every checkpoint"),
    "train_cfg.eval_iter": Int(0, why="0 = no periodic evaluation"),
    "train_cfg.log_iter": Int(1),
    "train_cfg.num_workers": Int(0, why="0 = load in the training process"),
    "train_cfg.output_dir": TEXT,
    # ---------------------------------------------------------------- eval_cfg
    "eval_cfg.model_path": PATH_OR_NONE,
    "eval_cfg.batch_size": Int(1),
    "eval_cfg.output_dir": TEXT,
    # ---------------------------------------------------------------- test_cfg
    "test_cfg.model_path": PATH_OR_NONE,
    # Scores are probabilities; a threshold above 1 is allowed and keeps nothing.
    "test_cfg.score_thr": Number(0),
    "test_cfg.mask_thr": PROBABILITY,
    "test_cfg.nms_pre": Int(1),
    "test_cfg.nms_kernel": Choice("gaussian", "linear"),
    "test_cfg.nms_sigma": Number(0, low_open=True),
    "test_cfg.update_thr": Number(0),
    "test_cfg.max_per_img": Int(1),
    "test_cfg.draw_thresh": PROBABILITY,
    "test_cfg.batch_size": Int(1),
    "test_cfg.input": TEXT,
    "test_cfg.output": TEXT,
}


def _dcn_convs_exist(cfg):
    bad = [i for i in cfg.head_dcn_convs if i >= cfg.head_stacked_convs]
    if bad:
        return (f"head_dcn_convs={cfg.head_dcn_convs!r} names tower convs {bad} but "
                f"head_stacked_convs={cfg.head_stacked_convs} has 0..{cfg.head_stacked_convs - 1}")
    return None


def _milestones_increase(cfg):
    steps = cfg.train_cfg.lr_milestones
    if any(a >= b for a, b in zip(steps, steps[1:])):
        return f"train_cfg.lr_milestones={steps!r} must be increasing"
    return None


# Rules that relate fields; each returns None or the whole message.
RELATIONS = (_dcn_convs_exist, _milestones_increase)


def rule_of(key):
    """The rule of field ``key``; a field without one is a bug in the config code."""
    try:
        return FIELDS[key]
    except KeyError:
        raise LookupError(f"config field {key!r} has no rule in config/checks.py FIELDS; "
                          "add one saying what it may hold") from None


def parse_override(key, text):
    """The value of ``key=text`` on the command line; ConfigError naming the field, the
    text and what is allowed when it does not fit."""
    rule = rule_of(key)
    value = None if text.lower() in _NONE else rule.parse(text)
    problem = rule.problem(value)
    if problem:
        raise ConfigError(f"cannot set {key}={text!r}: {problem}")
    return value


def check_config(cfg):
    """Check every field of ``cfg`` against FIELDS and RELATIONS; ConfigError for the first
    value that does not fit (a default that does not fit is the config class's mistake)."""
    for key, value in cfg.fields():
        problem = rule_of(key).problem(value)
        if problem:
            raise ConfigError(f"config {cfg.name}: {key}={value!r} {problem}")
    for relation in RELATIONS:
        problem = relation(cfg)
        if problem:
            raise ConfigError(f"config {cfg.name}: {problem}")


# ------------------------------------------------------------------ argparse types
# argparse prints ArgumentTypeError's text after "error: argument --NAME:" and exits 2.
def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def nonnegative_int(text):
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def probability(text):
    """argparse type: a number in [0, 1]; nan, which every comparison lets through, is
    refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # False for nan
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def positive_int_list(text):
    """argparse type: comma-separated integers >= 1, e.g. ``10,100,1000``."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 separated by commas, got "
                                         f"{text!r}")
    return [positive_int(word) for word in words]
