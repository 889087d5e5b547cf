"""A model's pass over a COCO-style set, and the evaluation built on it.

eval.py and test_dev.py (and training's periodic evaluation, :func:`evaluate_segm`) run
the one prediction loop, tools.inference.predictor.predict_stream: worker threads read
and preprocess, the calling thread runs the network and post-processing, worker threads
encode masks as COCO RLE. A progress bar with an ETA runs on stderr. Images that cannot be
read are reported and left out, and the evaluation covers the images that were predicted.
"""

import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import MissingInputError
from ..inference.backends import DygraphPredictor
from ..inference.predictor import StageTimes, predict_stream, progress_bar
from .cocoeval import STAT_NAMES, evaluate, per_class_table
from .results import encode_result, info_path, read_info, read_results, write_json


@dataclass
class Predictions:
    records: list    # COCO result records of every predicted image
    image_ids: list  # images that were read and predicted, ascending
    skipped: list    # (image id, message) for images that could not be read
    times: StageTimes
    wall: float      # seconds for the whole pass
    # (image id, size on disk, size in the annotation file) where they differ: masks are
    # made at the size on disk and can then match nothing (pycocotools gives IoU -1).
    mismatched: list = field(default_factory=list)

    def warnings(self, total):
        """Lines about images that were left out or cannot be scored."""
        lines = []
        if self.skipped:
            lines.append(f"warning: {len(self.skipped)} of {total} images could not be read")
        if self.mismatched:
            image_id, disk, listed = self.mismatched[0]
            lines.append(
                f"warning: {len(self.mismatched)} images differ in size from their entry in "
                f"the annotation file (e.g. id {image_id}: {disk[0]}x{disk[1]} on disk, "
                f"{listed[0]}x{listed[1]} listed); their detections cannot match")
        return lines

    def timing(self, batch_size):
        """Text: seconds per image over the pass and the per-stage breakdown."""
        count = len(self.image_ids)
        per_image = self.wall / max(count, 1)
        return (f"{count} images in {self.wall:.1f} s: {per_image:.2f} s per image including "
                f"reading, preprocessing, post-processing and encoding (batch size "
                f"{batch_size})\n{self.times.report(self.wall, count)}")


def predict_coco(predictor, style, cfg, coco, image_ids=None, batch_size=1, workers=2,
                 desc="predict"):
    """Predict ``image_ids`` (default all) of a tools.data.coco.CocoSet with ``predictor``
    (any backend of tools.inference.backends); returns Predictions.

    Labels become the set's category ids (``coco.cat_ids``); test-time sizes and
    thresholds come from ``cfg`` (test_size, pixel_mean/std, test_cfg).
    """
    image_ids = list(coco.image_ids if image_ids is None else image_ids)
    paths = [coco.image_path(i) for i in image_ids]
    skipped, times = [], StageTimes()
    bar = progress_bar(len(paths), desc)

    def on_error(item):
        skipped.append((image_ids[item.index], item.error))
        bar.write(f"skipped image id {image_ids[item.index]}: {item.error}", file=sys.stderr)

    mismatched = []

    def encode(item, result):
        image_id = image_ids[item.index]
        info = coco.image_info(image_id)
        listed = (info.get("height"), info.get("width"))
        if tuple(item.ori_hw) != listed:
            mismatched.append((image_id, tuple(item.ori_hw), listed))
        return encode_result(result, image_id, coco.cat_ids)

    start = time.perf_counter()
    with bar:
        outputs = predict_stream(predictor, paths, cfg.test_size, cfg.pixel_mean,
                                 cfg.pixel_std, style, batch_size=batch_size,
                                 num_workers=workers, consumer=encode, times=times,
                                 on_error=on_error, progress=bar.update)
    wall = time.perf_counter() - start
    done = [(i, out) for i, out in zip(image_ids, outputs) if out is not None]
    records = [record for _, out in done for record in out]
    return Predictions(records, [i for i, _ in done], skipped, times, wall,
                       sorted(mismatched))


def report(coco, records, image_ids, per_class=False, log=print):
    """Evaluate and print mask AP and box AP (and per-class AP); returns evaluate()'s dict."""
    results = evaluate(coco.coco, records, image_ids, log=log)
    if per_class:
        log("\nper-class AP at IoU 0.50:0.95:")
        log(per_class_table(results, coco.class_names))
    if results["segm"]["stats"][0] == -1:
        log(f"\nnote: AP -1 means there was nothing to score: the {len(image_ids)} images "
            "evaluated hold no ground-truth instance (crowd regions do not count)")
    elif not records:
        log("\nwarning: there are no detections at all, so every AP is 0")
    log(f"\nmask AP {results['segm']['stats'][0]:.3f}, box AP {results['bbox']['stats'][0]:.3f}"
        f" on {len(image_ids)} images of {coco.ann_file}")
    return results


def summary(results):
    return {t: dict(zip(STAT_NAMES, r["stats"])) for t, r in results.items()}


def run_eval(predictor, style, cfg, coco, results_path, batch_size=1, workers=2,
             limit=None, per_class=False, meta=None, log=print):
    """Predict the set, save the records at ``results_path`` (plus a summary next to it,
    see tools.evaluation.results.info_path), evaluate, and return evaluate()'s dict.

    limit: only the first ``limit`` images (ascending id). meta: extra fields for the
    summary (weights, config).
    """
    coco.require_annotations()  # before predicting: a file without any gives AP -1
    image_ids = coco.image_ids[:limit] if limit else coco.image_ids
    preds = predict_coco(predictor, style, cfg, coco, image_ids, batch_size, workers,
                         desc="eval")
    log(preds.timing(batch_size))
    write_json(results_path, preds.records)
    info = dict(meta or {}, ann_file=coco.ann_file, image_dir=coco.image_dir,
                image_ids=preds.image_ids,
                skipped=[{"image_id": i, "error": e} for i, e in preds.skipped],
                size_mismatch=[{"image_id": i, "on_disk": d, "listed": a}
                               for i, d, a in preds.mismatched],
                seconds_per_image=preds.wall / max(len(preds.image_ids), 1))
    # Written before evaluating, so --from-json works even if evaluation is interrupted.
    write_json(info_path(results_path), info)
    log(f"results: {results_path} ({len(preds.records)} detections)")
    for line in preds.warnings(len(image_ids)):
        log(line)
    if preds.skipped:
        log(f"  the unreadable images are left out of the evaluation (listed in "
            f"{info_path(results_path)})")
    if not preds.image_ids:
        raise MissingInputError(f"none of the {len(image_ids)} images could be read from "
                                f"{coco.image_dir}; check val_pre_path")
    results = report(coco, preds.records, preds.image_ids, per_class, log)
    write_json(info_path(results_path), dict(info, ap=summary(results)))
    return results


def eval_saved(coco, results_path, per_class=False, log=print):
    """Evaluate a results json again without predicting. The images evaluated are those
    recorded next to it by run_eval, else every image of the annotation file."""
    coco.require_annotations()
    records = read_results(results_path)
    info = read_info(results_path)
    image_ids = info.get("image_ids")
    if image_ids is None:
        log(f"{info_path(results_path)} not found: evaluating on every image of "
            f"{coco.ann_file}")
        image_ids = coco.image_ids
    elif info.get("ann_file") and os.path.abspath(info["ann_file"]) != os.path.abspath(
            coco.ann_file):
        log(f"note: {results_path} was made with {info['ann_file']}, evaluating against "
            f"{coco.ann_file}")
    if not image_ids:
        raise MissingInputError(f"{info_path(results_path)} lists no evaluated images")
    log(f"{len(records)} detections on {len(image_ids)} images from {results_path}")
    return report(coco, records, image_ids, per_class, log)


def evaluate_segm(model, postprocess, cfg, coco_set, style, image_ids=None, num_workers=2):
    """Mask AP of a training ``model`` on ``coco_set`` (a tools.data.coco.CocoSet) at the
    test size, quietly: training logs one line per evaluation.

    Returns {AP, AP50, AP75, APs, APm, APl, images, detections} with AP values in 0..1
    (0 when nothing is detected). Leaves the model in eval mode; the caller restores
    training mode.
    """
    preds = predict_coco(DygraphPredictor(model, postprocess), style, cfg, coco_set,
                         image_ids, batch_size=1, workers=num_workers, desc="eval")
    if not preds.image_ids:
        raise MissingInputError(f"no validation image could be read from "
                                f"{coco_set.image_dir}")
    results = evaluate(coco_set.coco, preds.records, preds.image_ids, iou_types=("segm",),
                       log=lambda *args: None)
    stats = dict(zip(STAT_NAMES[:6], results["segm"]["stats"][:6]))
    stats.update(images=len(preds.image_ids), detections=len(preds.records))
    return stats
