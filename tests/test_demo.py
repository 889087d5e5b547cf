"""demo.py end to end, as a user runs it: converted weights, real photos, awkward files."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.fixtures.exported import PHOTOS, SMALL
from tools.weights import standin as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Config 2 weights in PaddleDetection 0.5's container, converted by its script."""
    folder = tmp_path_factory.mktemp("weights")
    source = folder / "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams"
    fx.save_fluid_pickle(str(source), fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512)))
    output = folder / "dygraph.pdparams"
    done = run("1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py", str(source),
               "--output", str(output))
    assert done.returncode == 0, done.stderr
    return str(output)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The repo's test photos plus an RGBA png, a 16-bit png, a large jpeg and a broken file."""
    folder = tmp_path_factory.mktemp("inputs")
    for name in os.listdir(os.path.join(ROOT, "images", "test")):
        shutil.copy(os.path.join(ROOT, "images", "test", name), folder)
    chelsea = cv2.imread(os.path.join(ROOT, "images", "test", "chelsea.png"))
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([chelsea, np.full(chelsea.shape[:2], 128,
                                                                        np.uint8)]))
    cv2.imwrite(str(folder / "deep.png"), chelsea.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "large.jpg"), cv2.resize(chelsea, (3200, 2400)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    return folder


def test_demo_draws_every_readable_image_and_reports_the_rest(converted, inputs, tmp_path):
    out = tmp_path / "res"
    done = run("demo.py", "--config=2", f"test_cfg.model_path={converted}",
               "test_size=(256, 416)", "--input", str(inputs), "--output", str(out),
               "--thresh", "0.3", "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert "broken.jpg" in done.stderr and "not a decodable image" in done.stderr
    readable = sorted(n for n in os.listdir(inputs) if n != "broken.jpg")
    assert sorted(os.listdir(out)) == readable
    drawn_any = False
    for name in readable:
        original = cv2.imread(str(inputs / name), cv2.IMREAD_COLOR)
        drawn = cv2.imread(str(out / name), cv2.IMREAD_COLOR)
        assert drawn.shape == original.shape, name
        drawn_any |= bool((drawn.astype(int) - original).any())
    assert drawn_any  # the fixture weights score above 0.3, so masks were drawn
    assert "FPS including reading, preprocessing, post-processing and drawing" in done.stdout
    for stage in ("read", "preprocess", "forward", "postprocess", "consume", "wall"):
        assert f"  {stage}" in done.stdout
    assert "config: solov2_light_r50_vd_fpn_dcn_512_3x" in done.stdout  # the config table


def test_missing_weights_explain_what_to_do_without_a_traceback(tmp_path):
    done = run("demo.py", "--config=2", f"test_cfg.model_path={tmp_path / 'none.pdparams'}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "weight file not found" in done.stderr
    assert "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams" in done.stderr
    assert "1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py" in done.stderr


def test_bad_override_is_a_clean_error():
    done = run("demo.py", "num_clases=3")
    assert done.returncode != 0 and "did you mean num_classes" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_demo_at_full_size_on_the_repo_photos(converted, tmp_path):
    out = tmp_path / "res"
    done = run("demo.py", "--config=2", f"test_cfg.model_path={converted}", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == sorted(os.listdir(os.path.join(ROOT, "images", "test")))


def test_demo_runs_the_onnx_engine(exported2, tmp_path):
    pytest.importorskip("onnxruntime")
    cfg, _, model_dir, _ = exported2
    done = subprocess.run([sys.executable, "demo.py", "--config=2", "--engine", "onnx",
                           "--model-dir", model_dir, "--input", PHOTOS[0], "--output",
                           str(tmp_path / "res"), "--thresh", "0.3", *SMALL],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_path / "res") == ["chelsea.png"]
    assert "engine: onnx" in done.stdout and "  model" in done.stdout


# ---------------------------------------------------------------- bad input (issue 12)
def test_an_image_too_elongated_to_resize_is_skipped_with_a_message(converted, tmp_path):
    # A 10 x 4000 strip used to stop the whole run in cv2.resize (its short side rounds
    # to 0 px); now it is named and skipped like an unreadable file.
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(os.path.join(ROOT, "images", "test", "chelsea.png"), folder)
    cv2.imwrite(str(folder / "strip.png"), np.full((10, 4000, 3), 90, np.uint8))
    out = tmp_path / "res"
    done = run("demo.py", "--config=2", f"test_cfg.model_path={converted}",
               "test_size=(128, 192)", "--input", str(folder), "--output", str(out))
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and "strip.png: 4000x10 pixels is too elongated" in skipped[0]
    assert "Traceback" not in done.stderr
    assert os.listdir(out) == ["chelsea.png"]


@pytest.mark.parametrize("make, message", [
    (lambda folder: None, "the folder {folder} holds no images (looked for .jpg .jpeg .png"),
    (lambda folder: (folder / "notes.txt").write_text("x"), "the folder {folder} holds no "
                                                             "images"),
])
def test_a_folder_without_images_says_so_before_loading_weights(tmp_path, make, message):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    done = run("demo.py", "--config=2", f"test_cfg.model_path={tmp_path / 'none.pdparams'}",
               "--input", str(folder), "--output", str(tmp_path / "res"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: " + message.format(folder=folder)), lines[0]


@pytest.mark.parametrize("spec, message", [
    ("*.jpg", "no images match '{tmp}/*.jpg': the pattern matches no file"),
    ("photo.jpg", "{tmp}/photo.jpg does not exist; give an image file, a folder or a glob "
                  "pattern"),
])
def test_a_glob_or_path_that_names_nothing(tmp_path, spec, message):
    done = run("demo.py", "--config=2", "--input", str(tmp_path / spec), "--output",
               str(tmp_path / "res"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and lines == ["error: " + message.format(tmp=tmp_path)]
