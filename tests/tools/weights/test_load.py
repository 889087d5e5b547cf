"""Loading weights: for prediction (every tensor, a published file converted in memory, clear
errors) and as initial weights for training (backbone only, full model, other class count)."""

import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.weights import standin as fx
from tools.weights.convert import ConversionError, convert_file
from tools.weights.files import WeightFileError, load_pdparams, save_pdparams
from tools.weights.load import MissingWeightsError, load_initial_weights, load_weights
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


def test_a_published_coco_file_starts_a_model_for_other_classes(tmp_path):
    """Fine-tuning from config 2's file as downloaded: it is converted for its own 80
    classes (the strict converter refuses any other shape), then every tensor except the
    category output loads."""
    coco = load_config(2)
    source = str(tmp_path / "static.pdparams")
    fx.save_fluid_pickle(source, fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512)))
    reference = build_model(coco)
    load_weights(reference, source, coco)
    expected = state_of(reference)
    cfg = load_config(2, ["num_classes=3"])
    paddle.seed(2)
    model = build_model(cfg)
    fresh = state_of(model)
    messages = []
    load_initial_weights(model, source, cfg, log=messages.append)
    for name, value in state_of(model).items():
        if name.startswith("head.solo_cate."):
            np.testing.assert_array_equal(value, fresh[name])
        else:
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert f"{len(expected) - 2}/{len(expected)} tensors loaded" in messages[0]
    assert "the file predicts 80 classes, the config 3: head.solo_cate re-initialised" \
        in messages[0]


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


def test_missing_weights_message_says_where_to_get_them(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_weights(build_model(load_config(2)), str(tmp_path / "none.pdparams"),
                     load_config(2))
    message = str(info.value)
    assert "none.pdparams" in message
    assert "https://paddlemodels.bj.bcebos.com/object_detection/" \
           "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams" in message
    assert "1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py" in message


def test_published_file_loads_directly_and_matches_the_converted_one(tmp_path):
    cfg = load_config(2)
    source = str(tmp_path / "static.pdparams")
    fx.save_fluid_pickle(source, fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512)))
    convert_file(cfg, source, str(tmp_path / "converted.pdparams"))
    direct, converted = build_model(cfg), build_model(cfg)
    meta_direct = load_weights(direct, source, cfg)
    meta_converted = load_weights(converted, str(tmp_path / "converted.pdparams"), cfg)
    assert meta_direct["preprocess"] == meta_converted["preprocess"] == "ppdet_static"
    for (name, a), b in zip(direct.state_dict().items(), converted.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_wrong_class_count_is_explained(tmp_path):
    cfg3 = load_config(1, ["num_classes=3"])
    path = str(tmp_path / "three.pdparams")
    model = build_model(cfg3)
    from tools.weights.files import save_pdparams

    save_pdparams({k: v.numpy() for k, v in model.state_dict().items()}, path)
    cfg = load_config(1)
    with pytest.raises(WeightFileError, match="predicts 3 classes .* num_classes=80"):
        load_weights(build_model(cfg), path, cfg)


def test_backbone_file_is_not_a_detector(tmp_path):
    cfg = load_config(2)
    fx.save_tensor_folder(str(tmp_path / "ssld"), fx.make_state(fx.ssld_keys()))
    with pytest.raises(WeightFileError, match="ImageNet backbone"):
        load_weights(build_model(cfg), str(tmp_path / "ssld"), cfg)


def test_converted_weights_load_into_a_model_that_runs(tmp_path):
    cfg = load_config(2)
    source = str(tmp_path / "static.pdparams")
    fx.save_fluid_pickle(source, fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512)))
    convert_file(cfg, source, str(tmp_path / "out.pdparams"))
    arrays, meta = load_pdparams(str(tmp_path / "out.pdparams"))
    assert meta["config"] == cfg.name and meta["format"] == "ppdet_static"
    model = build_model(cfg)
    load_weights(model, str(tmp_path / "out.pdparams"), cfg)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, 64, 64]))
    assert np.isfinite(out["mask_feat"].numpy()).all()


def test_load_weights_refuses_nan_weights_instead_of_predicting_nothing(tmp_path):
    cfg = load_config(4)
    model = build_model(cfg)
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    arrays["head.solo_cate.bias"][1] = np.nan
    path = str(tmp_path / "nan.pdparams")
    save_pdparams(arrays, path)
    with pytest.raises(WeightFileError, match="1 tensor.*head.solo_cate.bias"):
        load_weights(model, path, cfg)
