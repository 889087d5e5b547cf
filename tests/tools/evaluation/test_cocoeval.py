"""Ground truth fed back as predictions must score AP 1.0 through encoding, the results
file and COCOeval; anything broken on that path (category ids, RLE, boxes, image ids)
shows up as a lower number."""

import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from model.postprocess import masks_to_boxes
from tests.fixtures.coco_data import voc_dataset
from tools.data.coco import CocoSet
from tools.data.synthetic import make_dataset
from tools.evaluation.cocoeval import evaluate, per_class_table, readable_ground_truth
from tools.evaluation.results import ResultsFileError, encode_result, read_results, write_json


def quiet(*args):
    pass


def ground_truth_as_results(coco, drop=()):
    """Post-processing-style result dicts made of each image's non-crowd annotations
    (masks rasterised as COCOeval rasterises them), with distinct scores."""
    rng = np.random.RandomState(0)
    results = {}
    for image_id in coco.image_ids:
        anns = [a for a in coco.annotations(image_id)
                if not a.get("iscrowd") and a["id"] not in drop]
        info = coco.image_info(image_id)
        masks = np.zeros((len(anns), info["height"], info["width"]), bool)
        for k, ann in enumerate(anns):
            masks[k] = coco.coco.annToMask(ann).astype(bool)
        results[image_id] = {"masks": masks, "boxes": masks_to_boxes(masks),
                             "labels": np.array([coco.label_of[a["category_id"]] for a in anns],
                                                np.int64),
                             "scores": rng.uniform(0.3, 1.0, len(anns)).astype(np.float32)}
    return results


def encode_and_reload(coco, results, tmp_path, cat_ids=None):
    records = [r for image_id, result in results.items()
               for r in encode_result(result, image_id, cat_ids or coco.cat_ids)]
    return read_results(write_json(str(tmp_path / "results.json"), records))


def rewrite(ann_path, new_id=None):
    """Make the ground truth self-consistent for the AP 1.0 check, and COCO-like.

    Each bbox becomes the box of the mask COCOeval rasterises from the segmentation. The
    fixtures take boxes from the pixel masks before polygons were traced, and a traced
    polygon rasterises a pixel smaller here and there; a box derived from a perfect mask
    would then miss the IoU 0.95 threshold on small objects and box AP would stay a little
    under 1 although nothing is wrong. ``new_id`` renumbers the categories.
    """
    coco = CocoSet(ann_path, ".").coco
    data = coco.dataset
    for ann in data["annotations"]:
        ann["bbox"] = [float(v) for v in mask_utils.toBbox(coco.annToRLE(ann))]
        if new_id:
            ann["category_id"] = new_id(ann["category_id"])
    for cat in data["categories"]:
        cat["id"] = new_id(cat["id"]) if new_id else cat["id"]
    with open(ann_path, "w") as f:
        json.dump(data, f)


@pytest.fixture(scope="module")
def voc_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voc")
    # Instances 3 and 12 are stored as polygons, 4 as a crowd region (never predicted);
    # category ids become 13, 16, 19, 22, not contiguous from 1, like COCO's own.
    ann, image_dir, _ = voc_dataset(str(folder), copies=2, use_polygons=(3, 12), crowd=(4,))
    rewrite(ann, lambda i: 3 * i + 10)
    return CocoSet(ann, image_dir)


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    paths = make_dataset(str(folder), train=0, val=6, seed=3, size=(96, 128))
    rewrite(paths["val"])
    return CocoSet(paths["val"], str(folder / "val"))


@pytest.mark.parametrize("name", ["voc_set", "shapes_set"])
def test_ground_truth_scores_ap_one(request, tmp_path, name):
    coco = request.getfixturevalue(name)
    records = encode_and_reload(coco, ground_truth_as_results(coco), tmp_path)
    results = evaluate(coco.coco, records, log=quiet)
    for iou_type in ("segm", "bbox"):
        stats = results[iou_type]["stats"]
        assert stats[0] == pytest.approx(1.0), (iou_type, stats)  # AP 0.50:0.95
        assert stats[8] == pytest.approx(1.0), (iou_type, stats)  # AR at 100
        assert results[iou_type]["per_class"] == pytest.approx([1.0] * coco.num_classes)


def test_category_ids_must_be_mapped_back(voc_set, tmp_path):
    # Writing labels as if they were category ids (or ids in another order) scores 0.
    results = ground_truth_as_results(voc_set)
    shifted = voc_set.cat_ids[1:] + voc_set.cat_ids[:1]
    records = encode_and_reload(voc_set, results, tmp_path, cat_ids=shifted)
    assert evaluate(voc_set.coco, records, log=quiet)["segm"]["stats"][0] == 0.0


def test_missing_detections_lower_recall(voc_set, tmp_path):
    # Dropping every chair of the first image: recall for chairs is half, the rest 1.0.
    chair = voc_set.cat_ids[voc_set.class_names.index("chair")]
    drop = {a["id"] for a in voc_set.annotations(voc_set.image_ids[0])
            if a["category_id"] == chair}
    records = encode_and_reload(voc_set, ground_truth_as_results(voc_set, drop), tmp_path)
    per_class = evaluate(voc_set.coco, records, log=quiet)["segm"]["per_class"]
    chair_ap = per_class[voc_set.class_names.index("chair")]
    # Precision 1 up to recall 0.5: recall thresholds 0.00..0.50 of COCO's 101.
    assert chair_ap == pytest.approx(51 / 101)
    others = [ap for k, ap in enumerate(per_class) if voc_set.class_names[k] != "chair"]
    assert others == pytest.approx([1.0] * 3)


def test_restricting_images_and_classes_without_ground_truth(voc_set, tmp_path):
    # Only the second image is evaluated, and the first image's predictions must not count.
    records = encode_and_reload(voc_set, ground_truth_as_results(voc_set), tmp_path)
    lines = []
    results = evaluate(voc_set.coco, records, image_ids=[2], log=lines.append)
    assert results["segm"]["stats"][0] == pytest.approx(1.0)
    assert any("1 images" in line for line in lines)
    table = per_class_table(results, voc_set.class_names)
    assert "diningtable" in table and "1.000" in table
    with pytest.raises(ValueError, match="no images"):
        evaluate(voc_set.coco, records, image_ids=[], log=quiet)


def test_no_detections_give_ap_zero_not_a_crash(voc_set):
    lines = []
    results = evaluate(voc_set.coco, [], log=lines.append)
    assert results["segm"]["stats"][0] == 0.0 and results["bbox"]["stats"][0] == 0.0
    assert "0 detections" in "\n".join(lines)


def test_results_for_unknown_images_are_refused(voc_set, tmp_path):
    records = encode_and_reload(voc_set, ground_truth_as_results(voc_set), tmp_path)
    records[0]["image_id"] = 999
    with pytest.raises(ResultsFileError, match="another annotation file"):
        evaluate(voc_set.coco, records, log=quiet)


def test_degenerate_ground_truth_is_evaluated_not_fatal(tmp_path):
    # extras: a 2-point polygon (pycocotools would take it for a box and fail), a
    # zero-area triangle, a polygon outside the image, an image without annotations.
    ann, image_dir, _ = voc_dataset(str(tmp_path), copies=1, extras=True)
    coco = CocoSet(ann, image_dir)
    repaired, notes = readable_ground_truth(coco.coco)
    assert notes == ["annotations with polygons of fewer than 3 points (dropped): 1",
                     "annotations left without a polygon (evaluated as empty masks): 1"]
    assert len(repaired.anns) == len(coco.coco.anns)
    assert coco.coco.anns[20]["segmentation"] == [[10.0, 10.0, 20.0, 20.0]]  # untouched

    # The three degenerate annotations (ids 20-22, all of the bottle class) cannot be
    # predicted; they stay in the ground truth as objects nobody can find.
    records = encode_and_reload(coco, ground_truth_as_results(coco, drop={20, 21, 22}),
                                tmp_path)
    lines = []
    results = evaluate(coco.coco, records, log=lines.append)
    assert any("fewer than 3 points" in line for line in lines)
    bottle = coco.class_names.index("bottle")
    assert {coco.coco.anns[i]["category_id"] for i in (20, 21, 22)} == {coco.cat_ids[bottle]}
    per_class = results["segm"]["per_class"]
    # One bottle of four found, at precision 1: recall thresholds 0.00..0.25 of COCO's 101.
    assert per_class[bottle] == pytest.approx(26 / 101)
    assert [ap for k, ap in enumerate(per_class) if k != bottle] == pytest.approx([1.0] * 3)
    assert not any(math.isnan(ap) for ap in per_class)
