"""Export: every part written, ONNX converted and repaired, the graphs' inputs and outputs,
and the command line. The exported graphs come from tests/fixtures/exported.py."""

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from config import load_config
from model.export import build_inference_model
from tests.fixtures.exported import PHOTOS, ROOT, SMALL, assert_same_detections, converted, predict
from tools.deploy.export import AUTOINSTALL, export, input_specs, no_pip_installs, to_onnx
from tools.inference.backends import ExportedPredictor, OnnxRunner, PaddleInferenceRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")


def test_export_writes_every_part_and_onnx_converts(exported2):
    _, _, model_dir, info = exported2
    assert info["onnx"] == {"model": "ok", "network": "ok", "postprocess": "ok"}
    for part in ("model", "network", "postprocess"):
        for ext in (".json", ".pdiparams", ".onnx"):
            assert os.path.getsize(os.path.join(model_dir, part + ext)) > 0
    assert info["preprocess"] == "ppdet_static"  # recorded from the converted weights


def test_round_trip_config0(tmp_path):
    cfg, weights = converted(tmp_path, 0)
    info = export(cfg, weights, str(tmp_path / "model"), log=lambda *a: None)
    # Without --split: the deployable graph and the network graph the engines run.
    assert info["onnx"] == {"model": "ok", "network": "ok"} and info["config"] == cfg.name
    assert info["parts"] == ["model", "network"]
    reference = predict("dygraph", cfg, weights, None, paths=PHOTOS[:1])
    assert len(reference[0]["labels"]) > 0
    for engine in ("paddle-inference", "onnx"):
        for mode in ("network", "graph"):
            ours = predict(engine, cfg, weights, str(tmp_path / "model"), mode,
                           paths=PHOTOS[:1])
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
    predictor = ExportedPredictor(model_dir, "onnx", mode="split")
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


def test_onnx_conversion_reports_a_missing_paddle2onnx(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # import now raises ImportError
    reason = to_onnx(str(tmp_path / "model"), str(tmp_path / "model.onnx"), 1e-5)
    assert "paddle2onnx is not installed" in reason and "requirements-deploy.txt" in reason


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


def test_export_command_explains_missing_weights(tmp_path):
    done = subprocess.run([sys.executable, "tools/export_model.py", "--config=2",
                           "--output", str(tmp_path / "out"),
                           f"test_cfg.model_path={tmp_path / 'none.pdparams'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "weight file not found" in done.stderr
    assert "1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py" in done.stderr
    assert not (tmp_path / "out").exists()


def staged(parent, token, names=("model.json", "model.pdiparams", "model.onnx")):
    """A staging folder as export() makes one: every file, deploy.json too, holds ``token``."""
    from tools.deploy.export import staging_folder

    folder = staging_folder(str(parent / "model"))
    for name in names + ("deploy.json",):
        with open(os.path.join(folder, name), "w") as f:
            f.write(f"{token} " + "x" * (len(token) * 1000))
    return folder


def tokens(folder):
    return {name: open(os.path.join(folder, name)).read().split()[0]
            for name in sorted(os.listdir(folder))}


def test_two_exports_into_one_folder_never_mix_their_files(tmp_path):
    """Each export moves its files in under a lock, deploy.json last: after two exports
    racing 100 times each, every file comes from the same (last) export."""
    import threading

    from tools.deploy.export import publish

    out = tmp_path / "model"
    out.mkdir()
    errors = []

    def exporter(k):
        try:
            for i in range(100):
                publish(staged(tmp_path, f"export{k}-{i}" * (k + 1)), str(out))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=exporter, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = tokens(out)
    assert sorted(found) == ["deploy.json", "model.json", "model.onnx", "model.pdiparams"]
    assert len(set(found.values())) == 1, found
    assert os.listdir(tmp_path) == ["model"]  # the staging folders are gone


def test_files_of_an_earlier_export_do_not_outlive_a_new_one(tmp_path):
    """An export whose ONNX conversion failed must not leave the last export's model.onnx
    beside its new graph; files that are not an export's stay."""
    from tools.deploy.export import publish

    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    publish(staged(tmp_path, "first", ("model.json", "model.pdiparams", "model.onnx",
                                       "network.json", "network.pdiparams")), str(out))
    publish(staged(tmp_path, "second", ("model.json", "model.pdiparams")), str(out))
    assert tokens(out) == {"deploy.json": "second", "model.json": "second",
                           "model.pdiparams": "second", "notes.txt": "mine"}


def test_an_export_folder_under_a_file_is_refused_before_exporting(tmp_path, monkeypatch):
    import model.export
    from tools.files import OutputError

    cfg, weights = converted(tmp_path, 2)
    (tmp_path / "file").write_text("x")

    def never(*args, **kwargs):
        raise AssertionError("the export started")

    monkeypatch.setattr(model.export, "build_inference_model", never)
    with pytest.raises(OutputError, match="export folder .*file/out is not writable"):
        export(cfg, weights, str(tmp_path / "file" / "out"), log=lambda *a: None)


def test_onnx_conversion_never_pip_installs(monkeypatch):
    # paddle2onnx sets POLYGRAPHY_AUTOINSTALL_DEPS=1 right before Polygraphy folds the
    # constants; a module Polygraphy then misses must be an error, not a pip install.
    pytest.importorskip("polygraphy")
    from polygraphy.exception import PolygraphyException
    from polygraphy.mod import importer

    installs = []
    monkeypatch.setattr(importer.sp, "run", lambda cmd, **kwargs: installs.append(cmd))
    monkeypatch.setenv(AUTOINSTALL, "1")  # set before, by the user or an earlier export
    with no_pip_installs():
        os.environ[AUTOINSTALL] = "1"  # what paddle2onnx does inside
        missing = importer.lazy_import("solov2_test_no_such_module")
        with pytest.raises(PolygraphyException):
            missing.anything
    assert installs == []
    assert os.environ[AUTOINSTALL] == "1"  # the environment is given back as it was
