"""Every backend must give the dygraph model's masks, and say what to do when its folder or
library is missing. The exported graphs come from tests/fixtures/exported.py."""

import sys

import numpy as np
import pytest

from config import load_config
from tests.fixtures.exported import PHOTOS, assert_same_detections, predict
from tools.inference.backends import BackendError, OnnxRunner, load_backend

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")


@pytest.mark.parametrize("engine, split", [("paddle-inference", False), ("onnx", False),
                                           ("paddle-inference", True), ("onnx", True)])
def test_exported_engines_give_the_dygraph_masks(exported2, engine, split):
    cfg, weights, model_dir, _ = exported2
    reference = predict("dygraph", cfg, weights, model_dir)
    ours = predict(engine, cfg, weights, model_dir, split)
    assert sum(len(r["labels"]) for r in reference) > 0  # the fixture weights detect
    for a, b, path in zip(ours, reference, PHOTOS):
        assert_same_detections(a, b)
        assert a["masks"].dtype == bool and a["labels"].dtype == np.int64


def test_missing_export_and_missing_onnx_say_what_to_do(tmp_path, exported2):
    cfg = exported2[0]
    with pytest.raises(BackendError, match="export the model first"):
        load_backend("onnx", cfg, model_dir=str(tmp_path / "nothing"))
    with pytest.raises(BackendError, match="not found; export with ONNX"):
        OnnxRunner(str(tmp_path / "model.onnx"))
    with pytest.raises(BackendError, match="holds solov2_light_r50_vd_fpn_dcn_512_3x"):
        load_backend("onnx", load_config(0), model_dir=exported2[2])
    with pytest.raises(BackendError, match=r"test_cfg.score_thr=0.3 \(exported with 0.1\)"):
        load_backend("onnx", load_config(2, ["test_cfg.score_thr=0.3"]),
                    model_dir=exported2[2])


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
