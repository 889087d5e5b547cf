"""Mask AP during training, through the same evaluation pass as eval.py.

The engine only needs ``evaluate() -> {AP, AP50, ...}``; this adapts the training model to
tools.evaluation.predict_coco (the shared threaded loop plus COCO encoding) and
tools.coco_eval.evaluate (COCOeval), quietly: training logs one line per evaluation.
"""

from .coco_eval import STAT_NAMES, evaluate
from .evaluation import predict_coco
from .predictor import DygraphPredictor


def evaluate_segm(model, postprocess, cfg, coco_set, style, image_ids=None, num_workers=2):
    """Mask AP of ``model`` on ``coco_set`` (a tools.coco.CocoSet) at the test size.

    Returns {AP, AP50, AP75, APs, APm, APl, images, detections} with AP values in 0..1
    (0 when nothing is detected). Leaves the model in eval mode; the caller restores
    training mode.
    """
    preds = predict_coco(DygraphPredictor(model, postprocess), style, cfg, coco_set,
                         image_ids, batch_size=1, workers=num_workers, desc="eval")
    if not preds.image_ids:
        raise FileNotFoundError(f"no validation image could be read from {coco_set.image_dir}")
    results = evaluate(coco_set.coco, preds.records, preds.image_ids, iou_types=("segm",),
                       log=lambda *args: None)
    stats = dict(zip(STAT_NAMES[:6], results["segm"]["stats"][:6]))
    stats.update(images=len(preds.image_ids), detections=len(preds.records))
    return stats
