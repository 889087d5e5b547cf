"""eval.py end to end: a converted stand-in checkpoint on a COCO-style set built from the
VOC photo, with an image missing on disk and an image without annotations.

The stand-in weights are untrained, so their AP is ~0; that AP 1.0 is reachable through the
same encoding and evaluation is tests/tools/evaluation/test_cocoeval.py's job. Inputs are shrunk to
128 px (test_size) to keep each image near two seconds on a slow CPU.
"""

import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.fixtures.coco_data import voc_dataset
from tools.data.coco import CocoSet
from tools.weights.standin import converted_checkpoint

eval_script = importlib.import_module("eval")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv):
    """(exit status, stdout, stderr) of eval.py's main in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = eval_script.main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    # Images 1-2: the photo, 3: blank without annotations, 4: listed but missing on disk.
    ann, image_dir, _ = voc_dataset(str(folder), copies=2, extras=True)
    weights = converted_checkpoint(str(folder / "converted.pdparams"), 2, num_classes=4)
    overrides = [f"val_path={ann}", f"val_pre_path={image_dir}", "num_classes=4",
                 f"eval_cfg.model_path={weights}", f"eval_cfg.output_dir={folder / 'out'}",
                 "test_size=(128,192)"]
    return folder, ann, overrides


@pytest.fixture(scope="module")
def batch_runs(voc):
    """The same evaluation with eval_cfg.batch_size 1 and 2."""
    folder, _, overrides = voc
    runs = {}
    for batch in (1, 2):
        path = str(folder / f"batch{batch}" / "results.json")
        status, out, err = run(["--config=2", "--per-class", "--output", path,
                                f"eval_cfg.batch_size={batch}"] + overrides)
        runs[batch] = dict(status=status, out=out, err=err, path=path)
    return runs


def read(path):
    with open(path) as f:
        return json.load(f)


def test_eval_reports_both_tables_and_saves_results(voc, batch_runs):
    _, ann, _ = voc
    first = batch_runs[1]
    assert first["status"] == 0, first["err"]
    out = first["out"]
    assert out.count("Average Precision") == 12 and out.count("Average Recall") == 12
    assert "mask AP (segm), 3 images" in out and "box AP (bbox), 3 images" in out
    assert "per-class AP" in out and "diningtable" in out
    assert "s per image including reading" in out and "forward" in out
    # The missing file is named, left out, and recorded next to the results.
    assert "missing.jpg" in first["err"]
    assert "1 of 4 images could not be read" in out
    info = read(first["path"].replace(".json", ".info.json"))
    assert info["image_ids"] == [1, 2, 3]
    assert [s["image_id"] for s in info["skipped"]] == [4]
    assert set(info["ap"]) == {"segm", "bbox"} and 0 <= info["ap"]["segm"]["AP"] <= 1

    records = read(first["path"])
    coco = CocoSet(ann, ".")
    assert records, "the stand-in weights are known to produce detections"
    assert {r["image_id"] for r in records} <= {1, 2, 3}
    assert {r["category_id"] for r in records} <= set(coco.cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.coco.loadRes(records)


def test_batch_of_two_gives_the_same_results_as_single_images(batch_runs):
    assert batch_runs[2]["status"] == 0, batch_runs[2]["err"]
    singles, batched = (read(batch_runs[b]["path"]) for b in (1, 2))
    assert len(singles) == len(batched)
    for a, b in zip(singles, batched):
        assert (a["image_id"], a["category_id"], a["segmentation"], a["bbox"]) == (
            b["image_id"], b["category_id"], b["segmentation"], b["bbox"])
        assert a["score"] == pytest.approx(b["score"], rel=1e-5)
    ap = [read(batch_runs[b]["path"].replace(".json", ".info.json"))["ap"] for b in (1, 2)]
    assert ap[0] == ap[1]


def test_from_json_recomputes_the_same_tables(voc, batch_runs):
    _, _, overrides = voc
    first = batch_runs[1]
    status, out, err = run(["--config=2", "--from-json", first["path"]] + overrides)
    assert status == 0, err

    def tables(text):
        return [line for line in text.splitlines() if line.startswith(" Average")]

    assert tables(out) == tables(first["out"])
    assert "on 3 images" in out


def test_no_detections_still_end_with_ap_zero(voc, tmp_path):
    _, _, overrides = voc
    path = str(tmp_path / "none.json")
    status, out, err = run(["--config=2", "--limit", "1", "--output", path,
                            "test_cfg.score_thr=1.1"] + overrides)
    assert status == 0, err
    assert read(path) == []
    assert "no detections at all" in out
    assert "mask AP 0.000, box AP 0.000 on 1 images" in out


@pytest.fixture(scope="module")
def three_class_weights(voc):
    folder, _, _ = voc
    return converted_checkpoint(str(folder / "three.pdparams"), 2, num_classes=3)


@pytest.mark.parametrize("case, extra, message", [
    ("weights for another class count", "WEIGHTS3", "predicts 3 classes but the config has"),
    ("weights missing", "eval_cfg.model_path=nowhere.pdparams", "wget"),
    ("class count unlike the set", "num_classes=80", "has 4 categories but the config has"),
    ("annotations missing", "val_path=nowhere.json", "annotation file not found"),
    ("no image readable", "val_pre_path=nowhere", "none of the 4 images could be read"),
    ("bad batch size", "eval_cfg.batch_size=0", "must be >= 1"),
])
def test_user_errors_give_a_message_and_status_1(voc, three_class_weights, case, extra,
                                                 message):
    _, _, overrides = voc
    if extra == "WEIGHTS3":
        extra = f"eval_cfg.model_path={three_class_weights}"
    status, out, err = run(["--config=2"] + overrides + [extra])
    assert status == 1, case
    assert "error: " in err and message in err.split("error: ", 1)[1], err
    assert "Traceback" not in err + out


def test_from_json_with_a_broken_file(voc, tmp_path):
    _, _, overrides = voc
    bad = tmp_path / "broken.json"
    bad.write_text("[{")
    status, _, err = run(["--config=2", "--from-json", str(bad)] + overrides)
    assert status == 1 and "not valid json" in err


def test_script_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "eval.py", "--config=2", f"val_path={tmp_path / 'none.json'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "error: annotation file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_results_folder_under_a_file_fails_before_predicting(voc, tmp_path, monkeypatch):
    import tools.evaluation.predict

    def never(*args, **kwargs):
        raise AssertionError("predicted although the results cannot be saved")

    monkeypatch.setattr(tools.evaluation.predict, "predict_coco", never)
    _, _, overrides = voc
    (tmp_path / "file").write_text("x")
    status, out, err = run(["--config=2", "--output", str(tmp_path / "file" / "r.json")]
                           + overrides)
    assert status == 1 and "Traceback" not in err + out
    assert "error: the results folder" in err and "is not writable" in err


def test_a_full_disk_is_one_line_and_status_1(voc, tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    _, _, overrides = voc
    path = tmp_path / "r.json"
    monkeypatch.setattr(os, "fsync", full)
    status, out, err = run(["--config=2", "--limit", "1", "--output", str(path)] + overrides)
    assert status == 1 and "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: no space left on the device while writing {path}; free some "
                      "space and rerun"]
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- bad input (issue 12)
def voc_files(overrides):
    """(annotation data, image folder) of the module's set, read back from its overrides."""
    fields = dict(word.split("=", 1) for word in overrides)
    return read(fields["val_path"]), fields["val_pre_path"]


def test_a_file_without_annotations_is_refused_before_predicting(voc, tmp_path):
    # It used to be predicted and end with "mask AP -1.000", unexplained.
    _, _, overrides = voc
    data, _ = voc_files(overrides)
    ann = tmp_path / "no_annotations.json"
    ann.write_text(json.dumps(dict(data, annotations=[])))
    results = tmp_path / "r.json"
    for extra in (["--output", str(results)], ["--from-json", str(results)]):
        status, out, err = run(["--config=2", *extra] + overrides + [f"val_path={ann}"])
        assert status == 1 and "Traceback" not in err + out
        assert f"error: {ann} holds no annotations to score" in err
        assert "AP -1" not in out and not results.exists()


def test_repeated_image_ids_are_refused_by_eval(voc, tmp_path):
    # Two images sharing id 1: AP fell from 0.026 to 0.000 with nothing said.
    _, _, overrides = voc
    data, _ = voc_files(overrides)
    images = [dict(image, id=1) if image["id"] == 2 else image for image in data["images"]]
    ann = tmp_path / "repeated.json"
    ann.write_text(json.dumps(dict(data, images=images)))
    status, out, err = run(["--config=2", "--output", str(tmp_path / "r.json")] + overrides +
                           [f"val_path={ann}"])
    assert status == 1 and "Traceback" not in err + out
    assert f"error: {ann}: 1 image ids appear more than once (1)" in err
    assert not (tmp_path / "r.json").exists()


def test_an_image_too_elongated_to_resize_is_skipped_and_reported(voc, tmp_path):
    import cv2
    import numpy as np

    _, _, overrides = voc
    data, image_dir = voc_files(overrides)
    folder = tmp_path / "images"
    folder.mkdir()
    photo = next(image for image in data["images"] if image["id"] == 1)
    shutil.copy(os.path.join(image_dir, photo["file_name"]), folder)
    cv2.imwrite(str(folder / "strip.png"), np.full((10, 4000, 3), 90, np.uint8))
    strip = {"id": 2, "file_name": "strip.png", "height": 10, "width": 4000}
    ann = tmp_path / "strip.json"
    ann.write_text(json.dumps(dict(data, images=[photo, strip], annotations=[
        a for a in data["annotations"] if a["image_id"] == 1])))
    path = tmp_path / "r.json"
    status, out, err = run(["--config=2", "--output", str(path)] + overrides +
                           [f"val_path={ann}", f"val_pre_path={folder}"])
    assert status == 0, err
    assert "skipped image id 2: " in err and "strip.png: 4000x10 pixels is too elongated" in err
    assert "1 of 2 images could not be read" in out
    info = read(str(path).replace(".json", ".info.json"))
    assert info["image_ids"] == [1] and [s["image_id"] for s in info["skipped"]] == [2]


def test_ap_minus_one_is_explained(voc, tmp_path):
    # Image 3 of the set has no annotations: scored alone, COCOeval gives -1.
    _, _, overrides = voc
    results = tmp_path / "only3.json"
    results.write_text("[]")
    (tmp_path / "only3.info.json").write_text(json.dumps({"image_ids": [3]}))
    status, out, err = run(["--config=2", "--from-json", str(results)] + overrides)
    assert status == 0, err
    assert "note: AP -1 means there was nothing to score: the 1 images evaluated hold no " \
           "ground-truth instance" in out
    assert "mask AP -1.000" in out and "no detections at all" not in out
