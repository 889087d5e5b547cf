import json
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from model.postprocess import masks_to_boxes
from tools.evaluation.results import (
    ResultsFileError,
    encode_result,
    info_path,
    read_info,
    read_results,
    write_json,
    write_submission,
)


def result_of(masks, labels, scores):
    masks = np.asarray(masks, bool)
    return {"masks": masks, "labels": np.asarray(labels, np.int64),
            "scores": np.asarray(scores, np.float32), "boxes": masks_to_boxes(masks)}


def two_masks():
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:7] = True   # rows 1-2, columns 2-6
    masks[1, 4, 0] = True       # one pixel
    return masks


def test_records_decode_to_the_masks_with_dataset_ids_boxes_and_float_scores():
    masks = two_masks()
    records = encode_result(result_of(masks, [1, 0], [0.9, 0.25]), image_id=42,
                            cat_ids=[7, 90])
    records = json.loads(json.dumps(records))  # must survive json as it is
    assert [r["image_id"] for r in records] == [42, 42]
    assert [r["category_id"] for r in records] == [90, 7]
    assert all(type(r["score"]) is float for r in records)
    assert records[0]["score"] == pytest.approx(0.9)
    assert [r["bbox"] for r in records] == [[2.0, 1.0, 5.0, 2.0], [0.0, 4.0, 1.0, 1.0]]
    for record, mask in zip(records, masks):
        assert record["segmentation"]["size"] == [6, 8]
        assert isinstance(record["segmentation"]["counts"], str)
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_boxes_agree_with_the_post_processing_boxes():
    # Post-processing gives (x0, y0, x1, y1) with exclusive ends; COCO wants x, y, w, h.
    masks = two_masks()
    result = result_of(masks, [0, 0], [0.5, 0.4])
    records = encode_result(result, 1, [1])
    x0, y0, x1, y1 = result["boxes"].T
    np.testing.assert_array_equal([r["bbox"] for r in records],
                                  np.stack([x0, y0, x1 - x0, y1 - y0], 1))


def test_image_without_detections_gives_no_records():
    empty = result_of(np.zeros((0, 5, 5)), [], [])
    assert encode_result(empty, 3, [1, 2]) == []


def test_results_round_trip_and_bad_files(tmp_path):
    records = encode_result(result_of(two_masks(), [0, 1], [0.5, 0.4]), 1, [1, 2])
    path = write_json(str(tmp_path / "sub" / "r.json"), records)
    assert read_results(path) == records
    assert read_info(path) == {}
    write_json(info_path(path), {"image_ids": [1]})
    assert info_path(path) == str(tmp_path / "sub" / "r.info.json")
    assert read_info(path) == {"image_ids": [1]}

    with pytest.raises(ResultsFileError, match="not found"):
        read_results(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    for content, message in (("[{", "not valid json"), ('{"a": 1}', "list of records"),
                             ('[{"image_id": 1, "score": 0.5}]', "record 0 needs")):
        bad.write_text(content)
        with pytest.raises(ResultsFileError, match=message):
            read_results(str(bad))


def test_submission_is_a_zip_of_one_segm_json_at_the_root(tmp_path):
    records = encode_result(result_of(two_masks(), [0, 1], [0.5, 0.4]), 1, [1, 2])
    json_path, zip_path = write_submission(records, str(tmp_path / "out"))
    assert json_path.endswith("detections_test-dev2017_solov2_results.json")
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ["detections_test-dev2017_solov2_results.json"]
        inside = json.loads(zf.read("detections_test-dev2017_solov2_results.json"))
    with open(json_path) as f:
        assert inside == json.load(f)
    assert [sorted(r) for r in inside] == [["category_id", "image_id", "score",
                                            "segmentation"]] * 2
    assert not list((tmp_path / "out").glob("*.tmp"))


def run_together(*jobs):
    """Run the callables in threads at once; re-raise the first error."""
    import threading

    errors = []

    def guarded(job):
        try:
            job()
        except Exception as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_two_runs_writing_one_results_file_leave_one_whole_file(tmp_path):
    """write_json used one fixed temporary name (path.tmp) for every writer: two runs saving
    the same results renamed each other's half-written file, or failed. Every read while
    they write, and the final file, is exactly one run's json."""
    import os

    path = str(tmp_path / "results.json")
    data = [[{"image_id": i, "score": 0.5} for i in range(n)] for n in (50, 3000)]
    texts = [json.dumps(d) for d in data]
    seen, stop = [], []

    def writer(k):
        return lambda: [write_json(path, data[k]) for _ in range(60)]

    def reader():
        while not stop:
            if os.path.exists(path):
                with open(path) as f:
                    seen.append(f.read())

    def writers():
        try:
            run_together(writer(0), writer(1))
        finally:
            stop.append(True)

    run_together(writers, reader)
    assert seen and all(text in texts for text in seen)
    with open(path) as f:
        assert f.read() in texts
    assert os.listdir(tmp_path) == ["results.json"]


def test_two_submissions_into_one_folder_leave_whole_files(tmp_path):
    base = encode_result(result_of(two_masks(), [0, 1], [0.5, 0.4]), 1, [1, 2])
    runs = [[dict(r, image_id=k) for r in base] * (1 + 40 * k) for k in (1, 2)]
    folder = str(tmp_path / "out")
    run_together(*[lambda k=k: [write_submission(runs[k], folder) for _ in range(20)]
                   for k in range(2)])
    name = "detections_test-dev2017_solov2_results"
    expected = [[{key: r[key] for key in ("image_id", "category_id", "segmentation", "score")}
                 for r in run] for run in runs]
    with open(tmp_path / "out" / f"{name}.json") as f:
        assert json.load(f) in expected
    with zipfile.ZipFile(tmp_path / "out" / f"{name}.zip") as zf:
        assert zf.namelist() == [f"{name}.json"]
        assert json.loads(zf.read(f"{name}.json")) in expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{name}.json",
                                                                    f"{name}.zip"]
