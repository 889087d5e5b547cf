"""The Python API (tools/inference/api.py, instances.py): a path, an array and a list give
the detections of the loop demo.py runs; results round-trip as COCO RLE and polygons."""

import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from config import load_config
from tools.data.preprocess import ImageReadError, read_image
from tools.inference import Predictor, Result
from tools.inference.backends import load_backend
from tools.inference.instances import decode_rle, mask_polygons
from tools.inference.predictor import predict_stream
from tools.inference.visualize import draw_instances
from tools.weights.standin import converted_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PHOTOS = [os.path.join(ROOT, "images", "test", n) for n in ("chelsea.png", "coffee.png")]
SMALL = ["test_size=(128, 192)"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return converted_checkpoint(str(tmp_path_factory.mktemp("api") / "w.pdparams"), 2, 80)


@pytest.fixture(scope="module")
def predictor(weights):
    return Predictor(config=2, weights=weights, overrides=SMALL, device="cpu", download=False)


def reference(weights, paths):
    """What demo.py's loop gives: load_backend + predict_stream."""
    cfg = load_config(2, SMALL)
    backend, style = load_backend("dygraph", cfg, weights)
    return predict_stream(backend, paths, cfg.test_size, cfg.pixel_mean, cfg.pixel_std,
                          style, batch_size=cfg.test_cfg.batch_size)


def same(result, expected):
    np.testing.assert_array_equal(result.masks, expected["masks"])
    np.testing.assert_array_equal(result.labels, expected["labels"])
    np.testing.assert_array_equal(result.scores, expected["scores"])
    np.testing.assert_array_equal(result.boxes, expected["boxes"])


def test_path_array_and_list_give_the_loops_detections(predictor, weights):
    expected = reference(weights, PHOTOS)
    assert sum(len(e["labels"]) for e in expected) > 0  # the stand-in weights detect
    one = predictor(PHOTOS[0])
    assert isinstance(one, Result) and one.path == PHOTOS[0]
    same(one, expected[0])
    assert one.masks.shape[1:] == read_image(PHOTOS[0]).shape[:2]
    same(predictor(read_image(PHOTOS[0])), expected[0])
    both = predictor(PHOTOS)
    assert [r.path for r in both] == PHOTOS
    for result, exp in zip(both, expected):
        same(result, exp)
    assert len(one.class_names) == 80 and one.names[0] == one.class_names[one.labels[0]]


def test_works_from_any_working_directory(weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the class list (data/coco_classes.txt) is found in the repo
    predictor = Predictor(config=2, weights=weights, overrides=SMALL, device="cpu",
                          download=False)
    assert len(predictor.class_names) == 80


def test_bad_inputs_raise(predictor, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        predictor(str(broken))
    with pytest.raises(ImageReadError, match="expected an RGB uint8 image"):
        predictor(np.zeros((10, 10), np.float32))


def test_draw_to_coco_and_polygons(predictor):
    result = predictor(PHOTOS[1])
    assert len(result) > 0
    np.testing.assert_array_equal(
        result.draw(0.3), draw_instances(result.image, result.as_dict(), result.class_names, 0.3))
    records = result.to_coco(image_id=7, cat_ids=list(range(100, 180)))
    assert [r["category_id"] for r in records] == [100 + int(k) for k in result.labels]
    for record, mask in zip(records, result.masks):
        assert record["image_id"] == 7
        np.testing.assert_array_equal(decode_rle(record["segmentation"]), mask)
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                      ys.max() - ys.min() + 1]
    data = result.to_json("coffee.png")
    assert (data["height"], data["width"]) == result.masks.shape[1:]
    assert data["file_name"] == "coffee.png" and len(data["detections"]) == len(result)
    assert [d["class_name"] for d in data["detections"]] == result.names
    polygons = result.polygons()
    assert len(polygons) == len(result)


def test_polygons_outline_each_part():
    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:25] = True      # a rectangle
    mask[25:35, 40:50] = True    # a second part
    mask[30, 5] = True           # a single pixel: no area, left out
    outlines = mask_polygons(mask)
    assert len(outlines) == 2
    h, w = mask.shape
    # Filled back through pycocotools, the outlines cover the parts up to their border.
    rles = mask_utils.frPyObjects(outlines, h, w)
    back = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    assert (back & ~mask).sum() == 0
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (inner & ~back).sum() == 0


def test_an_exported_engine_without_a_folder_asks_the_exporter(weights, monkeypatch):
    import tools
    import tools.inference
    from tools.inference import api

    # The package above every layer wires tools.deploy's cache in (see tools/__init__.py).
    assert tools.inference.exporter is tools._export_on_first_use
    asked, loaded = [], []

    def exporter(cfg, model_path, engine, download, log):
        asked.append((cfg.name, model_path, engine, download))
        return "/exports/here"

    def load_backend(engine, cfg, model_path, model_dir, **kwargs):
        loaded.append((engine, model_dir))
        return object(), "mmcv"

    monkeypatch.setattr(api, "load_backend", load_backend)
    predictor = Predictor(config=2, weights=weights, engine="onnx", overrides=SMALL,
                          device="cpu", download=False, exporter=exporter)
    assert asked == [("solov2_light_r50_vd_fpn_dcn_512_3x", weights, "onnx", False)]
    assert loaded == [("onnx", "/exports/here")] and predictor.model_dir == "/exports/here"
    Predictor(config=2, weights=weights, engine="onnx", model_dir="/given", device="cpu",
              exporter=exporter)
    assert len(asked) == 1 and loaded[-1] == ("onnx", "/given")  # a folder given: used


@pytest.mark.slow
def test_onnx_without_a_folder_exports_once_into_the_cache(weights, tmp_path, monkeypatch):
    """The real export (82 s on this 2-core machine, most of it the ONNX conversion)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    from tests.fixtures.exported import assert_same_detections

    monkeypatch.setenv("SOLOV2_HOME", str(tmp_path / "home"))
    first = Predictor(config=2, weights=weights, engine="onnx", overrides=SMALL, device="cpu",
                      download=False, log=lambda *a: None)
    folder = first.model_dir
    assert folder == str(tmp_path / "home" / "exports"
                         / "solov2_light_r50_vd_fpn_dcn_512_3x-w")
    mtimes = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder)}
    assert "network.onnx" in mtimes
    second = Predictor(config=2, weights=weights, engine="onnx", overrides=SMALL,
                       device="cpu", download=False, log=lambda *a: None)
    assert second.model_dir == folder
    assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns
            for n in os.listdir(folder)} == mtimes  # reused, not exported again
    for ours, expected in zip(second(PHOTOS), reference(weights, PHOTOS)):
        assert_same_detections(ours.as_dict(), expected)
