"""Initial weights for training: backbone only, full model, other class count."""

import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.weights.convert import ConversionError
from tools.weights.files import save_pdparams
from tools.weights.load import load_initial_weights
from tools.weights.standin import make_state, save_tensor_folder, ssld_keys


def state_of(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_other_class_count_reinitialises_only_the_category_output(tmp_path):
    paddle.seed(1)
    source = state_of(build_model(load_config(1, ["num_classes=80"])))
    path = str(tmp_path / "coco.pdparams")
    save_pdparams(source, path, {"format": "trained"})
    paddle.seed(2)
    model = build_model(load_config(1, ["num_classes=3"]))
    fresh = state_of(model)
    messages = []
    load_initial_weights(model, path, load_config(1, ["num_classes=3"]), log=messages.append)
    loaded = state_of(model)
    for name, value in loaded.items():
        if name.startswith("head.solo_cate."):
            np.testing.assert_array_equal(value, fresh[name])
        else:
            np.testing.assert_array_equal(value, source[name])
    assert "80 classes" in messages[0] and "head.solo_cate re-initialised" in messages[0]


def test_backbone_only_file_keeps_the_rest(tmp_path):
    paddle.seed(1)
    cfg = load_config(1, ["num_classes=3"])
    source = {k: v for k, v in state_of(build_model(cfg)).items() if k.startswith("backbone.")}
    path = str(tmp_path / "backbone.pdparams")
    save_pdparams(source, path)
    paddle.seed(2)
    model = build_model(cfg)
    fresh = state_of(model)
    messages = []
    load_initial_weights(model, path, cfg, log=messages.append)
    loaded = state_of(model)
    assert all(np.array_equal(loaded[k], source[k]) for k in source)
    assert np.array_equal(loaded["head.solo_cate.weight"], fresh["head.solo_cate.weight"])
    assert "fresh initialisation kept in: head, mask_feat_head, neck" in messages[0]


def test_imagenet_ssld_folder_fills_the_vd_backbone(tmp_path):
    state = make_state(ssld_keys(), seed=3)
    save_tensor_folder(str(tmp_path / "ssld"), state)
    cfg = load_config(2, ["num_classes=3"])
    model = build_model(cfg)
    load_initial_weights(model, str(tmp_path / "ssld"), cfg, log=lambda m: None)
    np.testing.assert_array_equal(model.state_dict()["backbone.stem.0.conv.weight"].numpy(),
                                  state["conv1_1_weights"])


def test_shape_mismatch_outside_the_category_output_is_an_error(tmp_path):
    source = state_of(build_model(load_config(0, ["num_classes=3"])))  # 256-ch kernels
    path = str(tmp_path / "r50.pdparams")
    save_pdparams(source, path)
    cfg = load_config(1, ["num_classes=3"])
    with pytest.raises(ConversionError, match="shape mismatch"):
        load_initial_weights(build_model(cfg), path, cfg, log=lambda m: None)


def test_missing_file_says_how_to_get_the_backbone(tmp_path):
    cfg = load_config(2)
    with pytest.raises(Exception, match="ResNet50_vd_ssld_pretrained"):
        load_initial_weights(build_model(cfg), str(tmp_path / "none.pdparams"), cfg)
