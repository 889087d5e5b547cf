"""Self-describing weight files: what train.py records, what model_info reads back, and the
config a script rebuilds from a file (agreeing words fine, contradicting ones refused)."""

import os

import numpy as np
import pytest

from config import load_config
from tools.errors import ConfigError
from tools.weights.describe import (
    description,
    load_described_config,
    model_info,
    summary,
    weights_given,
)
from tools.weights.files import WeightFileError, load_pdparams, save_pdparams

NAMES = ["circle", "square", "triangle"]
# What a training run of config 4 on someone's data was given.
TRAINED_WITH = ["train_path=data/mine/train.json", "test_size=(96,128)",
                "test_cfg.score_thr=0.3", "head_seg_feat_channels=32"]


def trained_file(folder, words=TRAINED_WITH, names=NAMES, number=4, name="model.pdparams"):
    cfg = load_config(number, words)
    path = os.path.join(str(folder), name)
    meta = dict(description(cfg, words, names, "mmcv"), format="trained", iteration="600")
    save_pdparams({"w": np.zeros(3, np.float32)}, path, meta)
    return path


def test_the_description_is_text_and_reads_back_decoded(tmp_path):
    path = trained_file(tmp_path)
    _, meta = load_pdparams(path)
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["class_names"] == '["circle", "square", "triangle"]'  # json, not repr
    info = model_info(path)
    assert info == {"config": "solov2_light_shapes_tour", "config_number": 4,
                    "overrides": TRAINED_WITH, "num_classes": 3, "class_names": NAMES,
                    "preprocess": "mmcv", "path": path}
    assert "--config=4" in summary(info) and "circle, square, triangle" in summary(info)


def test_files_without_a_description_give_none(tmp_path):
    plain = str(tmp_path / "converted.pdparams")
    save_pdparams({"w": np.zeros(3, np.float32)}, plain, {"format": "ppdet_static",
                                                          "config": "x"})
    broken = tmp_path / "broken.pdparams"
    broken.write_bytes(b"\x80\x04not a pickle")
    for path in (plain, str(broken), str(tmp_path / "missing.pdparams"), str(tmp_path),
                 None, str(tmp_path / "published.pth")):
        assert model_info(path) is None


def test_a_damaged_description_is_a_weight_file_error(tmp_path):
    path = str(tmp_path / "w.pdparams")
    save_pdparams({"w": np.zeros(3, np.float32)}, path,
                  {"config_number": "4", "num_classes": "3", "overrides": "[oops"})
    with pytest.raises(WeightFileError, match="description .* is damaged"):
        model_info(path)


def test_which_file_the_command_line_names():
    assert weights_given("a.pdparams", [], "test_cfg") == "a.pdparams"
    assert weights_given(None, ["model_path=b.pdparams"], "eval_cfg") == "b.pdparams"
    # The stage's own field wins over the config-wide one, as in the config.
    assert weights_given(None, ["model_path=b", "eval_cfg.model_path=c"], "eval_cfg") == "c"
    assert weights_given(None, ["test_cfg.model_path=c"], "eval_cfg") is None
    assert weights_given("a", ["test_cfg.model_path=a"], "test_cfg") == "a"
    with pytest.raises(ConfigError, match="--weights a and test_cfg.model_path=c name two"):
        weights_given("a", ["test_cfg.model_path=c"], "test_cfg")


@pytest.mark.parametrize("how", ["--weights", "model_path", "stage"])
def test_the_file_gives_config_overrides_and_classes(tmp_path, how):
    path = trained_file(tmp_path)
    weights, words = {"--weights": (path, []), "model_path": (None, [f"model_path={path}"]),
                      "stage": (None, [f"eval_cfg.model_path={path}"])}[how]
    cfg, info = load_described_config(None, words, weights, "eval_cfg")
    assert cfg.number == 4 and info["class_names"] == NAMES
    assert cfg.train_path == "data/mine/train.json" and cfg.test_size == (96, 128)
    assert cfg.head_seg_feat_channels == 32 and cfg.test_cfg.score_thr == 0.3
    assert cfg.eval_cfg.model_path == path


def test_words_given_as_well_win_and_agreeing_ones_are_fine(tmp_path):
    path = trained_file(tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("circle\nsquare\ntriangle\n")
    cfg, _ = load_described_config(4, ["test_cfg.score_thr=0.5", "num_classes=3",
                                       f"classes_path={classes}"], path, "test_cfg")
    assert cfg.test_cfg.score_thr == 0.5 and cfg.test_cfg.model_path == path
    assert cfg.test_size == (96, 128)


@pytest.mark.parametrize("number, words, message", [
    (2, [], "--config=2 contradicts .* trained with --config=4 "
            r"\(solov2_light_shapes_tour\); drop --config"),
    (None, ["num_classes=80"], "num_classes=80 contradicts .*, which predicts 3 classes"),
    (None, ["classes_path={other}"], "classes_path=.* lists cat, dog but .* was trained on "
                                     "circle, square, triangle"),
])
def test_words_that_contradict_the_file_are_one_config_error(tmp_path, number, words, message):
    path = trained_file(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("cat\ndog\n")
    words = [w.format(other=other) for w in words]
    with pytest.raises(ConfigError, match=message) as caught:
        load_described_config(number, words, path, "test_cfg")
    assert "\n" not in str(caught.value)


def test_without_a_description_the_command_line_decides(tmp_path):
    plain = str(tmp_path / "converted.pdparams")
    save_pdparams({"w": np.zeros(3, np.float32)}, plain, {"format": "ppdet_static"})
    cfg, info = load_described_config(None, ["num_classes=5"], plain, "test_cfg")
    assert info is None and cfg.number == 2 and cfg.num_classes == 5
    assert cfg.test_cfg.model_path == plain
    cfg, info = load_described_config(1, [], None, "test_cfg")
    assert info is None and cfg.number == 1 and cfg.test_cfg.model_path == cfg.model_path


def test_recorded_words_this_code_no_longer_takes_are_named(tmp_path):
    cfg = load_config(4)
    path = str(tmp_path / "old.pdparams")
    meta = description(cfg, ["retired_field=1"], NAMES, "mmcv")
    save_pdparams({"w": np.zeros(3, np.float32)}, path, meta)
    with pytest.raises(ConfigError, match="was trained with words this code no longer "
                                          "accepts .*retired_field"):
        load_described_config(None, [], path, "test_cfg")
