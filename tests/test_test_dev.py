"""test_dev.py end to end on an image-info file (images and categories, no annotations, as
COCO's image_info_test-dev2017.json), with a converted stand-in checkpoint."""

import contextlib
import importlib
import io
import json
import zipfile

from tests.fixtures.coco_data import voc_dataset
from tools.data.coco import CocoSet
from tools.weights.standin import converted_checkpoint

test_dev = importlib.import_module("test_dev")


def test_writes_a_zipped_results_file_that_pycocotools_loads(tmp_path):
    _, image_dir, data = voc_dataset(str(tmp_path), copies=1, extras=True)
    info_file = tmp_path / "image_info_test.json"
    info_file.write_text(json.dumps({"images": data["images"],
                                     "categories": data["categories"]}))
    weights = converted_checkpoint(str(tmp_path / "converted.pdparams"), 2, num_classes=4)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = test_dev.main([
            "--config=2", "--output", str(tmp_path / "submit"), f"test_path={info_file}",
            f"test_pre_path={image_dir}", "num_classes=4", f"eval_cfg.model_path={weights}",
            "test_size=(128,192)"])
    assert status == 0, err.getvalue()
    # Image 3 of the info file is missing on disk: named, and the run goes on.
    assert "missing.jpg" in err.getvalue()
    assert "1 of 3 images could not be read" in err.getvalue()

    name = "detections_test-dev2017_solov2_results.json"
    with zipfile.ZipFile(tmp_path / "submit" / "detections_test-dev2017_solov2_results.zip") as zf:
        assert zf.namelist() == [name]
        records = json.loads(zf.read(name))
    assert records == json.loads((tmp_path / "submit" / name).read_text())
    assert records and {r["image_id"] for r in records} <= {1, 2}
    assert all(set(r) == {"image_id", "category_id", "segmentation", "score"} for r in records)

    coco = CocoSet(str(info_file), image_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = coco.coco.loadRes(str(tmp_path / "submit" / name))
    assert len(loaded.anns) == len(records)
    assert {a["category_id"] for a in loaded.anns.values()} <= set(coco.cat_ids)
    assert f"upload {tmp_path / 'submit'}" in out.getvalue()


def test_results_folder_under_a_file_fails_before_predicting(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("predicted although the results cannot be saved")

    monkeypatch.setattr(test_dev, "predict_coco", never)
    _, image_dir, data = voc_dataset(str(tmp_path), copies=1)
    info_file = tmp_path / "image_info_test.json"
    info_file.write_text(json.dumps({"images": data["images"],
                                     "categories": data["categories"]}))
    weights = converted_checkpoint(str(tmp_path / "converted.pdparams"), 2, num_classes=4)
    (tmp_path / "file").write_text("x")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = test_dev.main([
            "--config=2", "--output", str(tmp_path / "file" / "submit"),
            f"test_path={info_file}", f"test_pre_path={image_dir}", "num_classes=4",
            f"eval_cfg.model_path={weights}", "test_size=(128,192)"])
    assert status == 1 and "Traceback" not in err.getvalue()
    assert "error: the results folder" in err.getvalue() and "not writable" in err.getvalue()
