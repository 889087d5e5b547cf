"""demo.py end to end, as a user runs it: converted weights, real photos, awkward files."""

import contextlib
import errno
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import time

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
    assert "engine: onnx [network graph + numpy post-processing]" in done.stdout
    # The exported engines run the network graph, then the dygraph engine's numpy
    # post-processing (tools/inference/backends.py, mode 'network'): timed apart.
    stages = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert "forward" in stages and "postprocess" in stages and "model" not in stages


# ---------------------------------------------------------------- outputs (in-process)
# demo.main with a stand-in backend (one mask over the image's top-left quarter) behind its
# Predictor, so a run takes well under a second and can count how many images reached it.
demo = importlib.import_module("demo")
api = importlib.import_module("tools.inference.api")
CLASSES = f"classes_path={os.path.join(ROOT, 'data', 'coco_classes.txt')}"


class StandIn:
    def __init__(self, delay=0.0):
        self.images, self.delay = 0, delay

    def __call__(self, batch, crop_hws, ori_hws, times):
        self.images += len(batch)
        time.sleep(self.delay)
        results = []
        for h, w in ori_hws:
            mask = np.zeros((1, h, w), bool)
            mask[0, :h // 2, :w // 2] = True
            results.append({"masks": mask, "labels": np.zeros(1, np.int64),
                            "scores": np.full(1, 0.9, np.float32),
                            "boxes": np.array([[0, 0, w // 2, h // 2]], np.float32)})
        return results


@pytest.fixture
def stand_in(monkeypatch):
    predictor = StandIn()
    monkeypatch.setattr(api, "load_backend", lambda *args, **kwargs: (predictor, "mmcv"))
    return predictor


def run_main(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = demo.main(["--config=2", CLASSES, "--workers", "1", *args])
    return status, out.getvalue(), err.getvalue()


def photo_folders(root, names=("a", "b")):
    """root/<name>/cat.png for each name, each a different crop of the same photo."""
    chelsea = cv2.imread(os.path.join(ROOT, "images", "test", "chelsea.png"))
    paths = []
    for k, name in enumerate(names):
        os.makedirs(root / name, exist_ok=True)
        path = str(root / name / "cat.png")
        cv2.imwrite(path, chelsea[10 * k:10 * k + 96, :128])
        paths.append(path)
    return paths


def contents(paths):
    return [open(p, "rb").read() for p in paths]


@pytest.mark.parametrize("case", ["folder onto itself", "file into its own folder"])
def test_an_output_onto_the_inputs_is_refused_before_predicting(stand_in, tmp_path, case):
    paths = photo_folders(tmp_path, ["a"])
    before = contents(paths)
    spec = str(tmp_path / "a") if case == "folder onto itself" else paths[0]
    status, _, err = run_main("--input", spec, "--output", str(tmp_path / "a"))
    assert status == 1 and "Traceback" not in err
    assert "would overwrite the input" in err and "pass an output folder" in err
    assert stand_in.images == 0
    assert contents(paths) == before and os.listdir(tmp_path / "a") == ["cat.png"]


def test_same_names_in_two_folders_give_two_drawings(stand_in, tmp_path):
    paths = photo_folders(tmp_path / "photos")
    out = tmp_path / "out"
    status, stdout, err = run_main("--input", str(tmp_path / "photos" / "*" / "*.png"),
                                   "--output", str(out))
    assert status == 0, err
    assert f"drawn images keep their paths below {tmp_path / 'photos'}" in stdout
    for name, source in zip(("a", "b"), paths):
        drawn = cv2.imread(str(out / name / "cat.png"))
        original = cv2.imread(source)
        assert drawn.shape == original.shape
        # The bottom-right quarter is outside the stand-in's mask: the input's own pixels.
        np.testing.assert_array_equal(drawn[60:, 80:], original[60:, 80:])
        assert (drawn[:40, :60] != original[:40, :60]).any()
    assert sorted(os.listdir(out)) == ["a", "b"]


def test_output_folder_under_a_file_fails_before_predicting(stand_in, tmp_path):
    paths = photo_folders(tmp_path)
    (tmp_path / "file").write_text("x")
    status, _, err = run_main("--input", paths[0], "--output", str(tmp_path / "file" / "res"))
    assert status == 1 and "Traceback" not in err
    assert "output folder" in err and "is not writable" in err
    assert stand_in.images == 0


def test_permission_denied_fails_before_predicting(stand_in, tmp_path, monkeypatch):
    import tempfile

    paths = photo_folders(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    status, _, err = run_main("--input", paths[0], "--output", str(tmp_path / "res"))
    assert status == 1 and "Traceback" not in err
    assert "not writable: permission denied" in err
    assert stand_in.images == 0


def test_a_full_disk_stops_the_run_with_one_line(monkeypatch, tmp_path):
    predictor = StandIn(delay=0.05)
    monkeypatch.setattr(api, "load_backend", lambda *args, **kwargs: (predictor, "mmcv"))
    paths = photo_folders(tmp_path, [f"f{i:02d}" for i in range(30)])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    status, _, err = run_main("--input", str(tmp_path / "*" / "cat.png"), "--output",
                              str(tmp_path / "res"), "--batch-size", "1")
    assert status == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no space left on the device" in errors[0]
    # The warm-up image plus the few predicted before the first write failed, not all 30.
    assert predictor.images < 1 + len(paths)
    assert not [n for _, _, names in os.walk(tmp_path / "res") for n in names]


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


# ---------------------------------------------------------------- one command (issue 13)
@pytest.fixture(scope="module")
def published2(tmp_path_factory):
    """Config 2's catalogue file as a stand-in in its published container."""
    from config import load_config

    entry = load_config(2).published_models()[0]
    path = tmp_path_factory.mktemp("published") / entry.file
    fx.CONTAINERS[2][1](str(path), 80)
    return entry, path.read_bytes()


def test_one_command_fetches_converts_caches_and_predicts(published2, tmp_path):
    from tests.fixtures.weights_server import Served, WeightsServer

    entry, data = published2
    home = tmp_path / "home"
    with WeightsServer() as server:
        server.files[entry.file] = Served(data)
        env = dict(os.environ, SOLOV2_HOME=str(home), SOLOV2_WEIGHTS_MIRROR=server.url)
        env.pop("SOLOV2_OFFLINE", None)

        def demo_run(out):
            return subprocess.run([sys.executable, "demo.py", "--config=2", "--input",
                                   PHOTOS[0], "--output", str(out), "test_size=(128, 192)"],
                                  cwd=ROOT, capture_output=True, text=True, env=env)

        first = demo_run(tmp_path / "res1")
        assert first.returncode == 0, first.stderr
        assert f"fetching {entry.file}" in first.stdout
        assert server.requests == [(f"/{entry.file}", None)]
        assert os.listdir(tmp_path / "res1") == ["chelsea.png"]
        assert os.path.exists(home / entry.output) and os.path.exists(home / "downloads")
        second = demo_run(tmp_path / "res2")
        assert second.returncode == 0, second.stderr
        assert len(server.requests) == 1 and "fetching" not in second.stdout  # cached
        assert os.listdir(tmp_path / "res2") == ["chelsea.png"]


@pytest.mark.parametrize("how", ["--no-download", "SOLOV2_OFFLINE=1"])
def test_offline_the_missing_default_says_how_to_get_it(tmp_path, how):
    env = dict(os.environ, SOLOV2_HOME=str(tmp_path / "home"),
               SOLOV2_WEIGHTS_MIRROR="http://127.0.0.1:9")  # never reached
    args = ["demo.py", "--config=2", "--input", PHOTOS[0], "--output", str(tmp_path / "res")]
    if how == "--no-download":
        args.append(how)
    else:
        env["SOLOV2_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: weight file not found: dygraph_solov2_light_r50_vd_fpn_dcn_512_3x" \
           ".pdparams" in done.stderr
    assert "It is the config's default, which is fetched" in done.stderr
    assert "--no-download or SOLOV2_OFFLINE=1" in done.stderr
    assert "SOLOV2_WEIGHTS_MIRROR" in done.stderr
    assert "wget -O solov2_light_r50_vd_fpn_dcn_512_3x.pdparams" in done.stderr
    assert not os.path.exists(tmp_path / "home" / "downloads")


def test_the_pth_entries_say_cloudstor_closed(tmp_path):
    done = run("demo.py", "--config=1", "--no-download", "--input", PHOTOS[0], "--output",
               str(tmp_path / "res"))
    assert done.returncode == 1
    assert "AARNet CloudStor" in done.stderr and "reported closed in 2023" in done.stderr


# ---------------------------------------------------------------- results as data
def test_json_and_mask_files_hold_exactly_what_is_drawn(converted, tmp_path):
    from tools.inference import Predictor
    from tools.inference.instances import decode_rle

    folder = tmp_path / "in"
    folder.mkdir()
    for path in PHOTOS:
        shutil.copy(path, folder)
    out = tmp_path / "res"
    status, stdout, err = run_main(f"test_cfg.model_path={converted}", "test_size=(128, 192)",
                                   "--input", str(folder), "--output", str(out), "--thresh",
                                   "0.2", "--save-json", "--save-masks")
    assert status == 0, err
    data = json.load(open(out / "results.json"))
    assert data["config"] == "solov2_light_r50_vd_fpn_dcn_512_3x" and data["thresh"] == 0.2
    assert [image["file_name"] for image in data["images"]] == ["chelsea.png", "coffee.png"]
    predictor = Predictor(config=2, weights=converted, overrides=["test_size=(128, 192)"],
                          device="cpu", download=False)
    masks_written = 0
    for image in data["images"]:
        expected = predictor(str(folder / image["file_name"])).keep(0.2)
        assert len(expected) > 0  # the stand-in weights detect
        assert (image["height"], image["width"]) == expected.size
        dets = image["detections"]
        assert [d["class_id"] for d in dets] == expected.labels.tolist()
        assert [d["class_name"] for d in dets] == expected.names
        np.testing.assert_allclose([d["score"] for d in dets], expected.scores, rtol=1e-6)
        stem = os.path.splitext(image["file_name"])[0]
        for k, (det, mask) in enumerate(zip(dets, expected.masks)):
            np.testing.assert_array_equal(decode_rle(det["mask"]), mask)
            name = f"{stem}_{k}_{expected.names[k].replace(' ', '_')}.png"
            png = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(png, mask.astype(np.uint8) * 255)
            masks_written += 1
        drawn = cv2.imread(str(out / image["file_name"]))[..., ::-1]
        np.testing.assert_array_equal(drawn, expected.draw())  # the same instances drawn
    assert len(os.listdir(out)) == 2 + masks_written + 1  # drawings, masks, results.json

    bare = tmp_path / "bare"
    status, _, err = run_main(f"test_cfg.model_path={converted}", "test_size=(128, 192)",
                              "--input", str(folder), "--output", str(bare), "--thresh",
                              "0.2", "--save-json", "--no-draw")
    assert status == 0, err
    assert os.listdir(bare) == ["results.json"]  # no drawing
    assert json.load(open(bare / "results.json"))["images"] == data["images"]


def test_no_draw_alone_is_refused(stand_in, tmp_path):
    status, _, err = run_main("--input", PHOTOS[0], "--output", str(tmp_path), "--no-draw")
    assert status == 1 and "--no-draw leaves nothing to write" in err
    assert stand_in.images == 0


# ---------------------------------------------------------------- videos and cameras
def clip(path, fourcc="mp4v", frames=12, fps=7):
    chelsea = cv2.imread(os.path.join(ROOT, "images", "test", "chelsea.png"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (131, 97))
    for k in range(frames):
        writer.write(np.ascontiguousarray(chelsea[20:117, 4 * k:4 * k + 131]))
    writer.release()
    return str(path)


def frame_count(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count, capture.get(cv2.CAP_PROP_FPS)


def test_images_and_a_video_in_one_run(stand_in, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PHOTOS[0], folder)
    video = clip(tmp_path / "clip.mp4")
    out = tmp_path / "res"
    status, stdout, err = run_main("--input", str(folder), video, "--output", str(out))
    assert status == 0, err
    assert "1 images and 1 videos from" in stdout
    # Mirrored below the inputs' common folder; the video's drawing is an .mp4.
    assert sorted(os.listdir(out)) == ["clip.mp4", "in"]
    assert os.listdir(out / "in") == ["chelsea.png"]
    video_out = str(out / "clip.mp4")
    assert frame_count(video_out) == (12, 7)
    assert f"-> {video_out}: 12 frames in" in stdout and "FPS" in stdout
    # warm-up image + the image + 12 frames
    assert stand_in.images == 14


def test_an_unreadable_video_is_one_error_line(stand_in, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.RandomState(0).bytes(5000))
    status, _, err = run_main("--input", str(garbage), "--output", str(tmp_path / "res"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"error: cannot read the video {garbage}")
    assert stand_in.images == 0


def test_a_truncated_video_says_how_many_frames_failed(stand_in, tmp_path):
    whole = clip(tmp_path / "whole.avi", fourcc="MJPG")
    data = open(whole, "rb").read()
    (tmp_path / "in").mkdir()
    cut = tmp_path / "in" / "cut.avi"
    cut.write_bytes(data[:len(data) * 2 // 3])
    readable, _ = frame_count(cut)
    status, stdout, err = run_main("--input", str(cut), "--output", str(tmp_path / "res"))
    assert status == 0, err
    assert f"{12 - readable} of the 12 frames the file lists could not be decoded" in err
    assert frame_count(tmp_path / "res" / "cut.mp4")[0] == readable


def test_camera_on_headless_opencv_says_there_is_no_window(stand_in, tmp_path, monkeypatch):
    from tests.fixtures.video import FakeCapture, fake_camera

    fake_camera(monkeypatch, FakeCapture(5))
    monkeypatch.setattr(demo, "gui_available", lambda: False)
    status, stdout, err = run_main("--camera", "0", "--output", str(tmp_path))
    assert status == 0, err
    assert "no live window" in stdout
    assert os.listdir(tmp_path) == ["camera0.mp4"]
    assert frame_count(tmp_path / "camera0.mp4")[0] >= 5
