"""Every backend must give the dygraph model's masks, and say what to do when its folder or
library is missing. The exported graphs come from tests/fixtures/exported.py."""

import sys

import numpy as np
import pytest

from config import load_config
from tests.fixtures.exported import PHOTOS, assert_same_detections, predict
from tools.inference.backends import MODES, BackendError, OnnxRunner, load_backend

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")


@pytest.mark.parametrize("engine", ["paddle-inference", "onnx"])
@pytest.mark.parametrize("mode", MODES)
def test_exported_engines_give_the_dygraph_masks(exported2, engine, mode):
    cfg, weights, model_dir, _ = exported2
    reference = predict("dygraph", cfg, weights, model_dir)
    ours = predict(engine, cfg, weights, model_dir, mode)
    assert sum(len(r["labels"]) for r in reference) > 0  # the fixture weights detect
    for a, b, path in zip(ours, reference, PHOTOS):
        assert_same_detections(a, b)
        assert a["masks"].dtype == bool and a["labels"].dtype == np.int64


def test_network_mode_is_the_default_and_takes_thresholds_from_the_config(exported2):
    cfg, weights, model_dir, _ = exported2
    predictor, _ = load_backend("onnx", cfg, model_dir=model_dir)
    assert predictor.mode == "network" and "numpy post-processing" in predictor.description
    # Another score threshold needs no new export in 'network' mode, and gives what the
    # dygraph engine gives with it; the one-graph mode still refuses it.
    strict = load_config(2, ["test_size=(128, 192)", "test_cfg.score_thr=0.3"])
    reference = predict("dygraph", strict, weights, model_dir)
    ours = predict("onnx", strict, weights, model_dir, "network")
    assert sum(len(r["labels"]) for r in reference) < sum(
        len(r["labels"]) for r in predict("dygraph", cfg, weights, model_dir))
    for a, b in zip(ours, reference):
        assert_same_detections(a, b)
    with pytest.raises(BackendError, match="other post-processing settings"):
        load_backend("onnx", strict, model_dir=model_dir, mode="graph")


def test_missing_export_and_missing_onnx_say_what_to_do(tmp_path, exported2):
    cfg = exported2[0]
    with pytest.raises(BackendError, match="export the model first"):
        load_backend("onnx", cfg, model_dir=str(tmp_path / "nothing"))
    with pytest.raises(BackendError, match="not found; export with ONNX"):
        OnnxRunner(str(tmp_path / "model.onnx"))
    with pytest.raises(BackendError, match="holds solov2_light_r50_vd_fpn_dcn_512_3x"):
        load_backend("onnx", load_config(0), model_dir=exported2[2])
    # Only the modes that run the exported post-processing graph bake the thresholds in.
    for mode in ("graph", "split"):
        with pytest.raises(BackendError,
                           match=r"test_cfg.score_thr=0.3 \(exported with 0.1\)"):
            load_backend("onnx", load_config(2, ["test_cfg.score_thr=0.3"]),
                         model_dir=exported2[2], mode=mode)


def test_onnx_engine_reports_a_missing_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendError, match="onnxruntime is not installed.*requirements-deploy"):
        OnnxRunner(str(tmp_path / "model.onnx"))


@pytest.mark.slow
def test_onnx_matches_dygraph_at_the_full_test_size(exported2):
    """The same check at config 2's own 512 x 852 input (the graph has dynamic sizes)."""
    _, weights, model_dir, _ = exported2
    cfg = load_config(2)
    reference = predict("dygraph", cfg, weights, model_dir, paths=PHOTOS[:1])
    ours = predict("onnx", cfg, weights, model_dir, paths=PHOTOS[:1])
    assert len(reference[0]["labels"]) > 0
    assert_same_detections(ours[0], reference[0])


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not readable json"),
    ('{"format": 1, "config": "x"}', "lacks ['parts', 'preprocess', 'postprocess']"),
    ("[1, 2]", "has format list"),
])
def test_a_damaged_deploy_json_says_export_again(tmp_path, content, message):
    (tmp_path / "deploy.json").write_text(content)
    with pytest.raises(BackendError, match="export the model again") as info:
        load_backend("onnx", load_config(2), model_dir=str(tmp_path))
    assert message in str(info.value)


def test_tensorrt_needs_a_gpu_and_an_exported_engine(exported2):
    cfg, weights, model_dir, _ = exported2
    with pytest.raises(BackendError, match="TensorRT runs on a GPU"):
        load_backend("onnx", cfg, model_dir=model_dir, tensorrt="fp16")
    with pytest.raises(BackendError, match="exported engines"):
        load_backend("dygraph", cfg, weights, tensorrt="fp32")


def test_trt_shapes_cover_every_padded_input():
    from tools.inference.backends import _trt_shapes

    low, high, opt = _trt_shapes({"test_size": [512, 852]}, "network")
    assert low["image"] == [1, 3, 32, 32] and high["image"] == [1, 3, 864, 864]
    assert opt["image"] == [1, 3, 512, 864]


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["paddle-inference", "onnx"])
def test_exported_engines_on_the_gpu_give_the_cpu_masks(exported2, engine):
    cfg, weights, model_dir, _ = exported2
    reference = predict(engine, cfg, weights, model_dir)
    predictor, style = load_backend(engine, cfg, model_dir=model_dir, device="gpu:0")
    from tools.inference.predictor import predict_stream

    ours = predict_stream(predictor, PHOTOS, cfg.test_size, cfg.pixel_mean, cfg.pixel_std,
                          style, batch_size=len(PHOTOS))
    for a, b in zip(ours, reference):
        assert_same_detections(a, b)
