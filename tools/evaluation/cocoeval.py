"""COCO mask AP and box AP of result records, with pycocotools' COCOeval.

The 12 numbers per metric are COCOeval.summarize's: AP at IoU 0.50:0.95, 0.50 and 0.75,
AP for small / medium / large objects, then AR at 1, 10 and 100 detections and AR for
small / medium / large. -1 means the evaluated images hold no ground truth in that range.
"""

import collections
import contextlib
import copy
import io

import numpy as np

from .results import ResultsFileError, encode_masks

IOU_TYPES = ("segm", "bbox")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def readable_ground_truth(coco_gt):
    """(COCO, notes): ``coco_gt`` with the annotations pycocotools cannot evaluate repaired.

    COCOeval reads each ground-truth annotation's segmentation, bbox, area and iscrowd.
    A polygon of fewer than 3 points encloses nothing, and one of exactly 2 points makes
    frPyObjects take the list for boxes and fail; such polygons are dropped, and an
    annotation left without any becomes an empty mask. It stays in the ground truth (a
    missed object, as the original file says it exists), as do zero-area annotations.
    Missing bbox / area / iscrowd are derived from the mask. The input is not modified.
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    annotations, notes = [], collections.Counter()
    for ann in coco_gt.dataset.get("annotations", []):
        segm = ann.get("segmentation")
        fixed = dict(ann)
        if isinstance(segm, list) or segm is None:
            polygons = [p for p in segm or [] if isinstance(p, list) and len(p) >= 6]
            if len(polygons) != len(segm or []):
                notes["annotations with polygons of fewer than 3 points (dropped)"] += 1
            if polygons:
                fixed["segmentation"] = polygons
            else:
                image = coco_gt.imgs[ann["image_id"]]
                empty = np.zeros((image["height"], image["width"]), np.uint8)
                fixed["segmentation"] = encode_masks(empty[None].astype(bool))[0]
                notes["annotations left without a polygon (evaluated as empty masks)"] += 1
        if "bbox" not in fixed or "area" not in fixed:
            rle = coco_gt.annToRLE(dict(fixed, segmentation=fixed["segmentation"]))
            fixed.setdefault("bbox", [float(v) for v in mask_utils.toBbox(rle)])
            fixed.setdefault("area", float(mask_utils.area(rle)))
            notes["annotations without bbox or area (taken from the mask)"] += 1
        fixed.setdefault("iscrowd", 0)
        annotations.append(fixed if fixed != ann else ann)
    if not notes:
        return coco_gt, []
    repaired = COCO()
    repaired.dataset = dict(coco_gt.dataset, annotations=annotations)
    with contextlib.redirect_stdout(io.StringIO()):
        repaired.createIndex()
    return repaired, [f"{what}: {count}" for what, count in notes.items()]


def results_for(records, iou_type):
    """Copies of ``records`` holding only the field ``iou_type`` is computed from.

    For 'segm' the bbox is dropped: loadRes would otherwise take the instance's area from
    its box rather than its mask (detectron2's COCOEvaluator drops it for the same reason).
    loadRes also writes into the records it is given, hence the copies.
    """
    drop = "bbox" if iou_type == "segm" else "segmentation"
    return [{k: v for k, v in r.items() if k != drop} for r in records]


def load_detections(coco_gt, records, iou_type):
    """A COCO object of ``records`` against the ground truth ``coco_gt`` (pycocotools COCO).

    loadRes cannot take an empty list (it inspects the first record), so no detections
    becomes an empty result set, which COCOeval scores as AP 0.
    """
    from pycocotools.coco import COCO

    known = set(coco_gt.getImgIds())
    unknown = {r["image_id"] for r in records} - known
    if unknown:
        raise ResultsFileError(
            f"results name {len(unknown)} image ids that the annotation file does not "
            f"have (e.g. {sorted(unknown)[:5]}); were they made for another annotation file?")
    if records:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results_for(records, iou_type))
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                     "categories": copy.deepcopy(coco_gt.dataset["categories"])}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def per_class_ap(coco_eval):
    """AP at IoU 0.50:0.95 per category, in ``coco_eval.params.catIds`` order; NaN for a
    category without ground truth in the evaluated images.

    eval['precision'] is [T iou thresholds, R recall points, K categories, A area ranges,
    M max-detection settings]; area 0 is 'all' and the last M is 100 detections, the
    setting of the headline AP. Entries of -1 mark (category, area) pairs without ground
    truth.
    """
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    out = []
    for k in range(precision.shape[2]):
        values = precision[:, :, k]
        values = values[values > -1]
        out.append(float(values.mean()) if values.size else float("nan"))
    return out


def evaluate(coco_gt, records, image_ids=None, iou_types=IOU_TYPES, log=print):
    """Run COCOeval for each IoU type and print its table.

    Args:
        coco_gt: pycocotools COCO of the ground truth (``CocoSet.coco``).
        records: result records (see tools.evaluation.results).
        image_ids: restrict the evaluation to these images (e.g. those that could be
            read); default all images of the annotation file.
    Returns:
        {iou_type: {"stats": 12 floats, "per_class": K floats}}.
    """
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(coco_gt.getImgIds() if image_ids is None else image_ids)
    if not image_ids:
        # An empty imgIds means "all images" to COCOeval; refuse rather than mislead.
        raise ValueError("no images to evaluate")
    coco_gt, notes = readable_ground_truth(coco_gt)
    for note in notes:
        log(f"note: ground truth: {note}")
    out = {}
    for iou_type in iou_types:
        coco_dt = load_detections(coco_gt, records, iou_type)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.params.imgIds = image_ids
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
        log(f"\n{'mask' if iou_type == 'segm' else 'box'} AP ({iou_type}), "
            f"{len(image_ids)} images, {len(coco_dt.anns)} detections:")
        table = io.StringIO()
        with contextlib.redirect_stdout(table):
            coco_eval.summarize()
        log(table.getvalue().rstrip())
        out[iou_type] = {"stats": [float(s) for s in coco_eval.stats],
                         "per_class": per_class_ap(coco_eval)}
    return out


def per_class_table(results, class_names):
    """Per-class AP of every evaluated IoU type side by side, as text."""
    from tabulate import tabulate

    iou_types = list(results)
    headers = ["class"] + [f"{'mask' if t == 'segm' else 'box'} AP" for t in iou_types]
    rows = []
    for k, name in enumerate(class_names):
        values = [results[t]["per_class"][k] for t in iou_types]
        rows.append([name] + ["-" if np.isnan(v) else f"{v:.3f}" for v in values])
    return tabulate(rows, headers=headers, disable_numparse=True)
