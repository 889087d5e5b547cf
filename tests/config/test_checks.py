"""The field rules (config/checks.py): every field of every config has one, every numbered
config passes them, and a bad value is one ConfigError naming field, value and what is
allowed. The argparse types the scripts use are tested here too."""

import argparse
import math

import pytest

from config import CONFIGS, FIELDS, load_config
from config.checks import (
    check_config,
    nonnegative_int,
    parse_override,
    positive_int,
    positive_int_list,
    probability,
)
from config.rules import Number, Optional
from tools.errors import ConfigError


@pytest.mark.parametrize("number", sorted(CONFIGS))
def test_every_config_resolves_clean_and_every_field_has_a_rule(number):
    cfg = load_config(number)
    assert set(dict(cfg.fields())) == set(FIELDS)
    check_config(cfg)  # raises on any default that does not fit its rule


@pytest.mark.parametrize("word, field, allowed", [
    ("test_cfg.score_thr=abc", "test_cfg.score_thr='abc'", "must be a number >= 0"),
    ("test_cfg.score_thr=[1]", "test_cfg.score_thr='[1]'", "must be a number >= 0"),
    ("test_cfg.score_thr=None", "test_cfg.score_thr='None'", "must be a number >= 0"),
    ("test_cfg.draw_thresh=nan", "test_cfg.draw_thresh='nan'", "a number in [0, 1]"),
    ("test_cfg.mask_thr=1.5", "test_cfg.mask_thr='1.5'", "must be in [0, 1]"),
    ("num_classes={}", "num_classes='{}'", "must be an integer >= 1"),
    ("num_classes=0", "num_classes='0'", "must be >= 1"),
    ("test_size=(1,2,3)", "test_size='(1,2,3)'", "must be a tuple of 2 integers >= 32"),
    ("test_size=(16, 32)", "test_size='(16, 32)'", "must be a tuple of 2 integers >= 32"),
    ("train_sizes=()", "train_sizes='()'", "1 or more short sides >= 32"),
    ("train_cfg.save_iter=0", "train_cfg.save_iter='0'", "must be >= 1"),
    ("train_cfg.log_iter=0", "train_cfg.log_iter='0'", "must be >= 1"),
    ("train_cfg.batch_size=0", "train_cfg.batch_size='0'", "must be >= 1"),
    ("train_cfg.batch_size=-1", "train_cfg.batch_size='-1'", "must be >= 1"),
    ("eval_cfg.batch_size=0", "eval_cfg.batch_size='0'", "must be >= 1"),
    ("test_cfg.batch_size=-1", "test_cfg.batch_size='-1'", "must be >= 1"),
    ("train_cfg.num_workers=-1", "train_cfg.num_workers='-1'", "must be >= 0"),
    ("train_cfg.base_lr=0", "train_cfg.base_lr='0'", "must be > 0"),
    ("train_cfg.momentum=1", "train_cfg.momentum='1'", "must be in [0, 1)"),
    ("train_cfg.grad_clip=-1", "train_cfg.grad_clip='-1'", "a number > 0, or None"),
    ("train_cfg.ema=maybe", "train_cfg.ema='maybe'", "must be true/false"),
    ("mask_feat_channels=100", "mask_feat_channels='100'", "a multiple of 32"),
    ("num_grids=(40, 36)", "num_grids='(40, 36)'", "a tuple of 5 grid sizes"),
    ("scale_ranges=((1, 96), (48, 192), (96, 384), (768, 192), (384, 2048))",
     "scale_ranges='((1, 96), (48, 192), (96, 384), (768, 192), (384, 2048))'",
     "0 <= low < high"),
    ("pixel_std=(0, 1, 1)", "pixel_std='(0, 1, 1)'", "3 numbers > 0"),
    ("backbone_dcn_stages=(3, 3)", "backbone_dcn_stages='(3, 3)'", "each at most once"),
    ("backbone_dcn_stages=(6,)", "backbone_dcn_stages='(6,)'", "residual stages in 2..5"),
    ("backbone_variant=c", "backbone_variant='c'", "one of 'b', 'd'"),
    ("preprocess=opencv", "preprocess='opencv'", "'auto', 'mmcv', 'ppdet_static', 'ppdet2'"),
    ("test_cfg.nms_kernel=box", "test_cfg.nms_kernel='box'", "one of 'gaussian', 'linear'"),
    ("train_path=none", "train_path='none'", "must be non-empty text"),
    ("model_path=", "model_path=''", "must be non-empty text, or None"),
])
def test_a_bad_value_names_the_field_the_value_and_what_is_allowed(word, field, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config(2, [word])
    message = str(caught.value)
    assert message.startswith(f"cannot set {field}: ") and allowed in message, message
    assert "\n" not in message and "ast." not in message


@pytest.mark.parametrize("words, message", [
    (["head_dcn_convs=(3,)"], "names tower convs [3] but head_stacked_convs=3 has 0..2"),
    (["train_cfg.lr_milestones=(500, 100)"], "lr_milestones=(500, 100) must be increasing"),
])
def test_rules_that_relate_two_fields(words, message):
    with pytest.raises(ConfigError, match="config solov2_light_r50_vd_fpn_dcn_512_3x: ") as e:
        load_config(2, words)
    assert message in str(e.value)


def test_values_are_parsed_to_the_rule_type():
    assert parse_override("train_cfg.grad_clip", "10") == 10.0
    assert isinstance(parse_override("train_cfg.grad_clip", "10"), float)
    assert parse_override("train_cfg.grad_clip", "none") is None
    assert parse_override("num_classes", "3.0") == 3 and isinstance(
        parse_override("num_classes", "3.0"), int)
    assert parse_override("train_sizes", "512") == (512,)
    assert parse_override("train_sizes", "[480, 512]") == (480, 512)
    assert parse_override("scale_ranges", str([[1, 2]] * 5)) == ((1, 2),) * 5
    assert parse_override("backbone_variant", "'d'") == "d"
    assert parse_override("train_cfg.ema", "Off") is False
    assert parse_override("classes_path", "'my classes.txt'") == "'my classes.txt'"
    assert parse_override("test_cfg.score_thr", "1.1") == 1.1  # keeps nothing; allowed


def test_a_config_class_with_a_bad_default_is_named():
    cfg = CONFIGS[4]()
    cfg.train_cfg.log_iter = 0
    with pytest.raises(ConfigError, match=r"config solov2_light_shapes_tour: "
                                          r"train_cfg.log_iter=0 must be >= 1"):
        cfg.resolve()


def test_a_field_without_a_rule_is_a_bug_not_a_user_error():
    cfg = CONFIGS[4]()
    cfg.new_field = 1
    with pytest.raises(LookupError, match="'new_field' has no rule in config/checks.py") as e:
        cfg.resolve()
    assert not isinstance(e.value, ConfigError)


@pytest.mark.parametrize("check, text, value", [
    (positive_int, "3", 3), (nonnegative_int, "0", 0), (probability, "0.5", 0.5),
    (probability, "1", 1.0), (positive_int_list, "10, 100", [10, 100]),
])
def test_argument_types_accept(check, text, value):
    assert check(text) == value


@pytest.mark.parametrize("check, text, message", [
    (positive_int, "0", "must be >= 1, got 0"),
    (positive_int, "-1", "must be >= 1, got -1"),
    (positive_int, "two", "expected an integer, got 'two'"),
    (nonnegative_int, "-1", "must be >= 0, got -1"),
    (probability, "2", "must be a number in [0, 1], got 2"),
    (probability, "nan", "must be a number in [0, 1], got nan"),
    (probability, "-inf", "must be a number in [0, 1], got -inf"),
    (probability, "high", "expected a number in [0, 1], got 'high'"),
    (positive_int_list, "10,x", "expected an integer, got 'x'"),
    (positive_int_list, ",", "expected integers >= 1 separated by commas"),
])
def test_argument_types_refuse(check, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        check(text)
    assert message in str(caught.value)


def test_nan_never_passes_a_number_rule():
    numbers = {key: rule for key, rule in FIELDS.items()
               if isinstance(rule, Number) or isinstance(getattr(rule, "rule", None), Number)}
    assert "test_cfg.score_thr" in numbers and "train_cfg.grad_clip" in numbers
    for key, rule in numbers.items():
        assert rule.problem(math.nan) is not None and rule.problem(math.inf) is not None, key
    assert isinstance(FIELDS["train_cfg.grad_clip"], Optional)
