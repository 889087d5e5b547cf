"""Mask AP during training: the shared prediction loop plus pycocotools' COCOeval.

Kept behind one function so the training engine does not depend on how evaluation is
implemented; once eval.py's COCO evaluation module lands, this should call it instead.
"""

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from .predictor import predict_stream

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def encode_result(image_id, result, cat_ids):
    """One image's predictions -> COCO result dicts with RLE masks."""
    out = []
    for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": image_id, "category_id": cat_ids[int(label)],
                    "segmentation": rle, "score": float(score)})
    return out


def evaluate_segm(model, postprocess, cfg, coco_set, style, image_ids=None, num_workers=2):
    """Mask AP of ``model`` on ``coco_set`` (a tools.coco.CocoSet) at the test size.

    Returns {AP, AP50, AP75, APs, APm, APl, images, detections}; AP values are in 0..1
    and -1 where COCOeval has nothing to measure.
    """
    image_ids = list(coco_set.image_ids if image_ids is None else image_ids)
    paths = [coco_set.image_path(i) for i in image_ids]

    def consume(item, result):
        return encode_result(image_ids[item.index], result, coco_set.cat_ids)

    per_image = predict_stream(model, postprocess, paths, cfg.test_size, cfg.pixel_mean,
                               cfg.pixel_std, style, batch_size=1, num_workers=num_workers,
                               consumer=consume)
    detections = [d for dets in per_image if dets for d in dets]
    stats = {name: -1.0 for name in STAT_NAMES}
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
            coco_dt = coco_set.coco.loadRes(detections)
            evaluator = COCOeval(coco_set.coco, coco_dt, "segm")
            evaluator.params.imgIds = image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = dict(zip(STAT_NAMES, (float(s) for s in evaluator.stats[:6])))
    stats.update(images=sum(r is not None for r in per_image), detections=len(detections))
    return stats
