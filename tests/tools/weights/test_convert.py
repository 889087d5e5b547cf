import numpy as np
import paddle
import pytest

from config import load_config
from model import build_model
from tools.weights import standin as fx
from tools.weights.convert import (
    ConversionError,
    convert_file,
    convert_state,
    converter_entry,
    converter_main,
    resolve_aliases,
)
from tools.weights.files import WeightFileError, load_pdparams
from tools.weights.load import MissingWeightsError, load_weights


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


def test_convert_state_reports_every_problem_at_once():
    arrays = {"a": np.zeros((2, 2)), "b": np.zeros(3), "junk": np.zeros(1)}
    shapes = {"x": (2, 2), "y": (4,), "z": (1,)}
    with pytest.raises(ConversionError) as info:
        convert_state(arrays, [("x", "a"), ("y", "b"), ("z", "c")], shapes)
    err = info.value
    assert err.missing == ["c (for z)"]
    assert err.unexpected == ["junk"]
    assert err.misshaped == ["b [3] -> y [4]"]


def test_aliases_fold_into_their_twin():
    same = np.arange(3.0)
    arrays, problems = resolve_aliases({"p.alias.w": same, "p.real.w": same.copy()},
                                       {"p.alias.": "p.real."})
    assert list(arrays) == ["p.real.w"] and problems == []
    arrays, problems = resolve_aliases({"p.alias.w": same}, {"p.alias.": "p.real."})
    assert list(arrays) == ["p.real.w"]
    _, problems = resolve_aliases({"p.alias.w": same, "p.real.w": same + 1},
                                  {"p.alias.": "p.real."})
    assert problems == ["p.alias.w differs from its alias p.real.w"]


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


def test_converter_defaults_come_from_the_catalogue():
    number, entry = converter_entry("1_paddle_r50vd_ssld_2paddle.py")
    assert number == 2 and entry.role == "backbone" and entry.unpacked
    number, entry = converter_entry("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py")
    assert (number, entry.file) == (0, "solov2_r50_fpn_3x.pdparams")
    with pytest.raises(LookupError):
        converter_entry("1_unknown2paddle.py")


def test_a_source_named_as_published_gets_its_catalogue_output(tmp_path, monkeypatch):
    """The PaddleDetection 2.x R50 file shares config 0's converter with the 0.5 file;
    named as published, it is written under its own catalogue name."""
    source = tmp_path / "solov2_r50_fpn_3x_coco.pdparams"
    fx.save_paddle2_pdparams(str(source), fx.make_state(fx.read_keys(
        "ppdet2_solov2_r50_fpn_3x_coco.keys")))
    monkeypatch.chdir(tmp_path)
    assert converter_main("1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py", [str(source)]) == 0
    _, meta = load_pdparams(str(tmp_path / "dygraph_solov2_r50_fpn_3x_coco.pdparams"))
    assert meta["format"] == "ppdet2" and meta["source"] == source.name
