"""Timing the backends the way demo.py runs them, for tools/benchmark.py.

Each backend predicts the same images through the shared loop (tools/inference/predictor.py),
drawing and PNG-encoding every result in memory instead of writing it; stages are timed per
image. Also: Matrix NMS alone, post-processing alone with the best N candidates, the split
export the exported backends need, and stand-in weights for machines without the published
files.
"""

import os
import statistics
import time

import cv2
import numpy as np
import paddle
from tabulate import tabulate

from model.postprocess import matrix_nms

from ..data.preprocess import pad_batch, padded_shape, preprocess, read_image
from ..errors import MissingInputError
from ..inference.backends import (
    BackendError,
    load_dygraph,
    postprocess_settings,
    read_deploy_info,
    shape_feeds,
)
from ..inference.predictor import StageTimes, predict_stream
from ..inference.visualize import draw_instances
from ..weights.standin import CONTAINERS, converted_checkpoint
from .export import export

STAGES = (("read", "read"), ("preprocess", "preprocess"), ("forward", "forward"),
          ("postprocess", "postprocess"), ("consume", "draw"))


def fixture_weights(cfg, folder):
    """Deterministic stand-in weights for ``cfg`` (tools/weights/standin.py), written in the
    published container and converted into ``folder``; returns the converted path (cached)."""
    number = cfg.number
    if number not in CONTAINERS:
        raise MissingInputError(f"no fixture weights for config {number} (only for "
                                f"configs {sorted(CONTAINERS)}); pass --weights")
    path = os.path.join(folder, f"fixture_{cfg.name}_{cfg.num_classes}classes.pdparams")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        converted_checkpoint(path, number, cfg.num_classes)
    return path


def ensure_export(cfg, weights, folder, log=print):
    """The split export of ``weights`` in ``folder``, made unless it is already there."""
    try:
        info = read_deploy_info(folder)
        if (info["weights"] == os.path.basename(weights) and "network" in info["parts"]
                and info.get("postprocess") == postprocess_settings(cfg)
                and os.path.getmtime(os.path.join(folder, "deploy.json"))
                >= os.path.getmtime(weights)):
            return
    except BackendError:
        pass
    log(f"exporting {cfg.name} to {folder} (once) ...")
    export(cfg, weights, folder, onnx=True, split=True, log=lambda *a: None)


def time_engine(predictor, style, cfg, paths, repeats, class_names, batch_size=1):
    """Warm-up pass, then ``repeats`` timed passes. Returns (images/s per pass, dict stage
    -> list of ms per image per pass)."""
    def draw(item, result):
        drawn = draw_instances(item.image, result, class_names, cfg.test_cfg.draw_thresh)
        return len(cv2.imencode(".png", drawn[:, :, ::-1])[1])

    stream = dict(size=cfg.test_size, mean=cfg.pixel_mean, std=cfg.pixel_std, style=style,
                  batch_size=batch_size, keep_image=True, consumer=draw)
    predict_stream(predictor, paths, **stream)  # warm-up: allocation, kernel choice
    rates, stages = [], {}
    for _ in range(repeats):
        times = StageTimes()
        start = time.perf_counter()
        predict_stream(predictor, paths, times=times, **stream)
        rates.append(len(paths) / (time.perf_counter() - start))
        for stage, ms in times.rows():
            stages.setdefault(stage, []).append(ms)
    return rates, stages


def time_matrix_nms(cfg, repeats, count=500):
    """Median and min-max seconds of Matrix NMS on ``count`` random masks of the mask
    feature size of a padded ``test_size`` image (the eager form, as dygraph runs it)."""
    short, long_ = cfg.test_size
    h, w = padded_shape(short, long_)
    rng = np.random.RandomState(0)
    masks = rng.uniform(size=(count, h // 4, w // 4)) > 0.7
    labels = rng.randint(0, cfg.num_classes, count)
    scores = np.sort(rng.uniform(0.1, 1, count))[::-1].astype(np.float32)
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        matrix_nms(masks, labels, scores, cfg.test_cfg.nms_kernel, cfg.test_cfg.nms_sigma)
        seconds.append(time.perf_counter() - start)
    seconds = seconds[1:]
    return statistics.median(seconds), min(seconds), max(seconds), (h // 4, w // 4)


def network_outputs(cfg, weights, path, style):
    """Dygraph network outputs (numpy) for one image, with its crop and original size."""
    predictor, _ = load_dygraph(cfg, weights)
    chw, crop_hw, ori_hw = preprocess(read_image(path), cfg.test_size, cfg.pixel_mean,
                                      cfg.pixel_std, style)
    with paddle.no_grad():
        outputs = predictor.model(paddle.to_tensor(pad_batch([chw])))
    return {k: v.numpy() for k, v in outputs.items()}, crop_hw, ori_hw


def keep_best_candidates(cate_scores, count, score_thr):
    """``cate_scores`` with all but the ``count`` highest scores above ``score_thr`` set to
    0, so that the post-processing sees ``count`` candidates."""
    flat = cate_scores.ravel().copy()
    above = np.flatnonzero(flat > score_thr)
    drop = above[np.argsort(flat[above])[::-1][count:]]
    flat[drop] = 0.0
    return flat.reshape(cate_scores.shape)


def postprocess_sweep(engine, predictor, outputs, crop_hw, ori_hw, cfg, counts, repeats):
    """Median ms of the post-processing alone of ``engine`` for each candidate count."""
    def run(cate_scores):
        if getattr(predictor, "postprocess", None) is not None:  # numpy, as dygraph runs it
            predictor.postprocess(dict(outputs, cate_scores=cate_scores), [crop_hw], [ori_hw])
        else:
            predictor.runners["postprocess"](dict(outputs, cate_scores=cate_scores,
                                                  **shape_feeds(crop_hw, ori_hw)))

    result = {}
    for count in counts:
        scores = keep_best_candidates(outputs["cate_scores"], count, cfg.test_cfg.score_thr)
        seconds = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            run(scores)
            seconds.append(time.perf_counter() - start)
        result[count] = 1000 * statistics.median(seconds[1:])
    return result


def table(results):
    """The speed table: median images/s (min-max) and median ms per stage per backend."""
    headers = ["engine", "images/s (min-max)"] + [f"{label} ms" for _, label in STAGES] + [
        "post / forward"]
    rows = []
    for engine, (rates, stages) in results.items():
        med = {stage: statistics.median(v) for stage, v in stages.items()}
        row = [engine, f"{statistics.median(rates):.3f} ({min(rates):.3f}-{max(rates):.3f})"]
        row += [f"{med[stage]:.0f}" if stage in med else "-" for stage, _ in STAGES]
        share = med.get("postprocess", 0) / med["forward"] if med.get("forward") else None
        row.append(f"{100 * share:.1f}%" if share is not None else "-")
        rows.append(row)
    return tabulate(rows, headers=headers, disable_numparse=True)


def sweep_table(sweeps, results):
    """Post-processing ms for each candidate count, and its share of the forward pass."""
    counts = list(next(iter(sweeps.values())))
    rows = []
    for engine, times in sweeps.items():
        forward = statistics.median(results[engine][1]["forward"])
        rows.append([engine] + [f"{times[n]:.0f} ({100 * times[n] / forward:.1f}%)"
                                for n in counts])
    return tabulate(rows, headers=["engine"] + [f"N={n} (of forward)" for n in counts],
                    disable_numparse=True)
