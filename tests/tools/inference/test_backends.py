"""Export, reload and run: every engine must give the dygraph model's masks.

The exported graphs are built once per module at a small input size from the fixture
weights of tests/fixtures (which do produce detections), in the containers of the
published files and through the converter, as a user would.
"""

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from config import load_config
from model.export import build_inference_model
from tools.deploy.export import export, input_specs, to_onnx
from tools.inference.backends import (
    BackendError,
    ExportedPredictor,
    OnnxRunner,
    PaddleInferenceRunner,
    load_backend,
)
from tools.inference.predictor import predict_stream
from tools.weights import standin as fx
from tools.weights.convert import convert_file

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PHOTOS = [os.path.join(ROOT, "images", "test", name) for name in ("chelsea.png", "coffee.png")]
SMALL = ["test_size=(128, 192)"]


def converted(folder, number):
    keys = fx.ppdet_static_keys(**(fx.STATIC_R50 if number == 0 else fx.STATIC_LIGHT_512))
    source = str(folder / "static.pdparams")
    fx.save_fluid_pickle(source, fx.make_state(keys))
    cfg = load_config(number, SMALL)
    convert_file(cfg, source, str(folder / "converted.pdparams"))
    return cfg, str(folder / "converted.pdparams")


@pytest.fixture(scope="module")
def exported2(tmp_path_factory):
    """Config 2 exported with the network and post-processing also saved apart."""
    folder = tmp_path_factory.mktemp("export2")
    cfg, weights = converted(folder, 2)
    info = export(cfg, weights, str(folder / "model"), onnx=True, split=True,
                  log=lambda *a: None)
    return cfg, weights, str(folder / "model"), info


def predict(engine, cfg, weights, model_dir, split=False, paths=PHOTOS, number=2):
    predictor, style = load_backend(engine, cfg, weights, model_dir, split=split)
    return predict_stream(predictor, paths, cfg.test_size, cfg.pixel_mean, cfg.pixel_std,
                          style, batch_size=len(paths))


def assert_same_detections(ours, reference):
    """Identical labels in the same order, scores within 1e-4, mask IoU >= 0.99 each."""
    np.testing.assert_array_equal(ours["labels"], reference["labels"])
    np.testing.assert_allclose(ours["scores"], reference["scores"], atol=1e-4, rtol=0)
    assert ours["masks"].shape == reference["masks"].shape
    for a, b in zip(ours["masks"], reference["masks"]):
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.99
    np.testing.assert_allclose(ours["boxes"], reference["boxes"], atol=2)


def test_export_writes_every_part_and_onnx_converts(exported2):
    _, _, model_dir, info = exported2
    assert info["onnx"] == {"model": "ok", "network": "ok", "postprocess": "ok"}
    for part in ("model", "network", "postprocess"):
        for ext in (".json", ".pdiparams", ".onnx"):
            assert os.path.getsize(os.path.join(model_dir, part + ext)) > 0
    assert info["preprocess"] == "ppdet_static"  # recorded from the converted weights


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


def test_round_trip_config0(tmp_path):
    cfg, weights = converted(tmp_path, 0)
    info = export(cfg, weights, str(tmp_path / "model"), log=lambda *a: None)
    assert info["onnx"] == {"model": "ok"} and info["config"] == cfg.name
    reference = predict("dygraph", cfg, weights, None, paths=PHOTOS[:1], number=0)
    assert len(reference[0]["labels"]) > 0
    for engine in ("paddle-inference", "onnx"):
        ours = predict(engine, cfg, weights, str(tmp_path / "model"), paths=PHOTOS[:1],
                       number=0)
        assert_same_detections(ours[0], reference[0])


@pytest.mark.parametrize("case", ["no candidate", "masks too small"])
def test_post_processing_graph_returns_empty_arrays(exported2, case):
    """Nothing survives (no cell above score_thr, or only masks not larger than the
    stride): every engine returns k = 0 results at the original size, no error."""
    cfg, _, model_dir, _ = exported2
    cells = sum(g * g for g in cfg.num_grids)
    scores = np.zeros((1, cells, cfg.num_classes), np.float32)
    if case == "masks too small":
        scores[0, :5, 2] = 0.9  # kernels of zeros: probability 0.5 everywhere, area 0
    feeds = {"cate_scores": scores,
             "kernels": np.zeros((1, cells, cfg.mask_feat_channels), np.float32),
             "mask_feat": np.ones((1, cfg.mask_feat_channels, 32, 48), np.float32),
             "im_shape": np.array([[128, 170]], np.float32),
             "scale_factor": np.array([[128 / 300, 170 / 400]], np.float32)}
    prefix = os.path.join(model_dir, "postprocess")
    for runner in (PaddleInferenceRunner(prefix), OnnxRunner(prefix + ".onnx")):
        masks, labels, scores, boxes = runner(feeds)
        assert masks.shape == (0, 300, 400)
        assert labels.shape == scores.shape == (0,) and boxes.shape == (0, 4)


def test_original_size_is_recovered_from_the_scale_factor(exported2):
    """The graph gets resized size and resized / original ratio; masks must come back at
    the exact original size for awkward sizes (odd, strongly down- or up-scaled)."""
    cfg, _, model_dir, _ = exported2
    predictor = ExportedPredictor(model_dir, "onnx", split=True)
    runner = predictor.runners["postprocess"]
    cells = sum(g * g for g in cfg.num_grids)
    scores = np.zeros((1, cells, cfg.num_classes), np.float32)
    scores[0, 5, 3] = 0.9
    kernels = np.zeros((1, cells, cfg.mask_feat_channels), np.float32)
    kernels[0, 5, 0] = 1.0
    feat = np.full((1, cfg.mask_feat_channels, 32, 48), -10.0, np.float32)
    feat[0, 0, :16, :24] = 10.0
    for crop, ori in [((128, 170), (301, 401)), ((127, 191), (2399, 3607)), ((128, 128), (17, 17))]:
        masks, labels, _, _ = runner({"cate_scores": scores, "kernels": kernels,
                                      "mask_feat": feat,
                                      "im_shape": np.array([crop], np.float32),
                                      "scale_factor": np.array([[crop[0] / ori[0],
                                                                 crop[1] / ori[1]]], np.float32)})
        assert masks.shape == (1,) + ori and labels.tolist() == [3]


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


def test_onnx_conversion_reports_a_missing_paddle2onnx(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # import now raises ImportError
    reason = to_onnx(str(tmp_path / "model"), str(tmp_path / "model.onnx"), 1e-5)
    assert "paddle2onnx is not installed" in reason and "requirements-deploy.txt" in reason


def test_onnx_engine_reports_a_missing_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendError, match="onnxruntime is not installed.*requirements-deploy"):
        OnnxRunner(str(tmp_path / "model.onnx"))


def test_group_norm_epsilon_is_repaired_in_the_onnx_graph(exported2):
    """paddle2onnx 2.1.0 writes garbage epsilons; every GroupNorm must carry the model's."""
    import onnx

    graph = onnx.load(os.path.join(exported2[2], "network.onnx"), load_external_data=False)
    epsilons = [attr.f for node in graph.graph.node if node.op_type == "InstanceNormalization"
                for attr in node.attribute if attr.name == "epsilon"]
    assert len(epsilons) > 0
    np.testing.assert_allclose(epsilons, 1e-5, rtol=1e-6)


def test_input_specs_match_the_layers():
    cfg = load_config(2, SMALL)
    layer = build_inference_model(cfg, paddle.nn.Layer(), "postprocess")
    names = [spec.name for spec in input_specs(cfg, "postprocess")]
    assert names == ["cate_scores", "kernels", "mask_feat", "im_shape", "scale_factor"]
    assert layer.cell_strides.shape == [sum(g * g for g in cfg.num_grids)]


def test_demo_runs_the_onnx_engine(exported2, tmp_path):
    cfg, _, model_dir, _ = exported2
    done = subprocess.run([sys.executable, "demo.py", "--config=2", "--engine", "onnx",
                           "--model-dir", model_dir, "--input", PHOTOS[0], "--output",
                           str(tmp_path / "res"), "--thresh", "0.3", *SMALL],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_path / "res") == ["chelsea.png"]
    assert "engine: onnx" in done.stdout and "  model" in done.stdout


def test_benchmark_quick_mode_prints_the_table(exported2):
    cfg, weights, model_dir, _ = exported2
    done = subprocess.run([sys.executable, "tools/benchmark.py", "--config=2", "--quick",
                           "--engines", "dygraph,onnx", "--weights", weights,
                           "--model-dir", model_dir, "--sweep", "10"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for header in ("images/s (min-max)", "read ms", "preprocess ms", "forward ms",
                   "postprocess ms", "draw ms", "post / forward"):
        assert header in out
    rows = [line for line in out.splitlines() if line.startswith(("dygraph ", "onnx "))]
    assert len(rows) == 4  # the speed table and the post-processing sweep
    assert "Matrix NMS, 500 masks of 32x48" in out
    assert "fastest exported engine: onnx" in out


@pytest.mark.parametrize("words, message", [
    (["--config=4", "--fixture-weights"], "no fixture weights for config 4"),
    (["--config=2", "nosuch=1"], "unknown config field 'nosuch'"),
    (["--config=2", "--fixture-weights", "num_classes=3"], "lists 80 classes but num_classes=3"),
])
def test_benchmark_explains_bad_input(tmp_path, words, message):
    done = subprocess.run([sys.executable, "tools/benchmark.py", "--quick", "--engines",
                           "dygraph", "--cache", str(tmp_path), *words],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_export_command_explains_missing_weights(tmp_path):
    done = subprocess.run([sys.executable, "tools/export_model.py", "--config=2",
                           "--output", str(tmp_path / "out"),
                           f"test_cfg.model_path={tmp_path / 'none.pdparams'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "weight file not found" in done.stderr
    assert "1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_onnx_matches_dygraph_at_the_full_test_size(exported2):
    """The same check at config 2's own 512 x 852 input (the graph has dynamic sizes)."""
    _, weights, model_dir, _ = exported2
    cfg = load_config(2)
    reference = predict("dygraph", cfg, weights, model_dir, paths=PHOTOS[:1])
    ours = predict("onnx", cfg, weights, model_dir, paths=PHOTOS[:1])
    assert len(reference[0]["labels"]) > 0
    assert_same_detections(ours[0], reference[0])
