"""Timing the backends the way demo.py runs them, for tools/benchmark.py.

Each backend predicts the same images through the shared loop (tools/inference/predictor.py),
drawing and PNG-encoding every result in memory instead of writing it; stages are timed per
image. Also: Matrix NMS alone, post-processing alone with the best N candidates, the split
export the exported backends need, and stand-in weights for machines without the published
files.
"""

import math
import os
import statistics
import time

import cv2
import numpy as np
import paddle
import paddle.nn as nn
from paddle.vision.ops import DeformConv2D
from tabulate import tabulate

from model.postprocess import (
    build_postprocess,
    kept_after_nms,
    matrix_nms,
    one_blas_thread,
    paste_masks,
    scored_candidates,
)

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


def png_drawer(cfg, class_names):
    """The loop's consumer for timing: draw the result and PNG-encode it in memory, as
    demo.py does before writing; returns the PNG's size."""
    def draw(item, result):
        drawn = draw_instances(item.image, result, class_names, cfg.test_cfg.draw_thresh)
        return len(cv2.imencode(".png", drawn[:, :, ::-1])[1])

    return draw


def stream_settings(cfg, style, **extra):
    """predict_stream's keywords for timing: the config's sizes and normalisation, the
    original images kept for drawing."""
    return dict(size=cfg.test_size, mean=cfg.pixel_mean, std=cfg.pixel_std, style=style,
                keep_image=True, **extra)


def time_engine(predictor, style, cfg, paths, repeats, class_names, batch_size=1):
    """Warm-up pass, then ``repeats`` timed passes. Returns (images/s per pass, dict stage
    -> list of ms per image per pass)."""
    stream = stream_settings(cfg, style, batch_size=batch_size,
                             consumer=png_drawer(cfg, class_names))
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


def network_only(predictor):
    """``predictor`` (a dygraph or a 'network'-mode exported one) without its
    post-processing: a loop predictor whose results are (outputs, crop_hw, ori_hw) per
    image, for :func:`time_overlap` to post-process in the consumer threads."""
    if getattr(predictor, "postprocess", None) is None:
        raise BackendError("overlapping needs the numpy post-processing: dygraph, or an "
                           "exported engine in mode 'network'")

    def network(batch, crop_hws, ori_hws, times):
        start = time.perf_counter()
        outputs = predictor.network(batch)
        times.add("forward", time.perf_counter() - start, len(batch))
        return [({key: value[i:i + 1] for key, value in outputs.items()}, crop_hw, ori_hw)
                for i, (crop_hw, ori_hw) in enumerate(zip(crop_hws, ori_hws))]

    return network


def time_overlap(predictor, style, cfg, paths, repeats, class_names):
    """images/s per pass as demo.py runs the engine (post-processing after each network
    pass, in the calling thread) and with the post-processing moved into the consumer
    threads, where it overlaps the next image's network pass; passes interleaved, after a
    warm-up of each. Returns {'after': [...], 'overlapped': [...]}."""
    draw = png_drawer(cfg, class_names)

    def post_and_draw(item, pending):
        outputs, crop_hw, ori_hw = pending
        return draw(item, predictor.postprocess(outputs, [crop_hw], [ori_hw])[0])

    ways = {"after": (predictor, draw), "overlapped": (network_only(predictor), post_and_draw)}
    stream = stream_settings(cfg, style)
    for run, consumer in ways.values():
        predict_stream(run, paths, consumer=consumer, **stream)  # warm-up
    rates = {name: [] for name in ways}
    for _ in range(repeats):
        for name, (run, consumer) in ways.items():
            start = time.perf_counter()
            predict_stream(run, paths, consumer=consumer, **stream)
            rates[name].append(len(paths) / (time.perf_counter() - start))
    return rates


def overlap_line(engine, rates):
    after, overlapped = (statistics.median(rates[k]) for k in ("after", "overlapped"))
    return (f"  {engine}: {after:.3f} images/s post-processing after each network pass, "
            f"{overlapped:.3f} overlapped with the next one ({overlapped / after:.2f}x)")


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
    return predictor.network(pad_batch([chw])), crop_hw, ori_hw


# The matmul the bound is measured with: the size the issue quoted (107-138 GFLOP/s on the
# 2-core AMD EPYC), best of a few because other work on the machine only ever slows it.
GEMM_SIZE = 2048
GEMM_REPEATS = 3


def gemm_rate(size=GEMM_SIZE, repeats=GEMM_REPEATS):
    """Best fp32 matmul rate on this machine, GFLOP/s: {'numpy': .., 'paddle': ..}, each
    the best of ``repeats`` products of two ``size`` x ``size`` matrices (2 size^3 FLOPs).
    numpy runs its OpenBLAS, paddle its MKL, each with the threads it has (every core)."""
    rng = np.random.RandomState(0)
    a, b = (rng.uniform(-1, 1, (size, size)).astype(np.float32) for _ in range(2))
    ta, tb = paddle.to_tensor(a), paddle.to_tensor(b)
    flops = 2.0 * size ** 3
    products = {"numpy": lambda: a @ b,
                "paddle": lambda: paddle.matmul(ta, tb).numpy()}  # .numpy() waits for it
    rates = {}
    for name, product in products.items():
        product()  # warm-up: threads started, pages touched
        best = min(_seconds(product) for _ in range(repeats))
        rates[name] = flops / best / 1e9
    return rates


def _seconds(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def conv_flops(model, batch):
    """FLOPs of the convolutions of one eval forward pass of ``model`` on ``batch``
    [N, 3, H, W], counted with a forward hook on every nn.Conv2D and DCNv2 DeformConv2D
    (offset convs are nn.Conv2D): 2 * Cin/groups * kh * kw * Cout * Hout * Wout * N per
    call (the weight holds Cout * Cin/groups * kh * kw numbers), a layer called on several
    levels counted at each. Not counted: biases, norms, activations, resizes, additions
    and DCN's bilinear sampling. Returns {'conv': (calls, FLOPs), 'deform': (calls,
    FLOPs)}."""
    counts = {"conv": [0, 0], "deform": [0, 0]}

    def hook(layer, inputs, output):
        n, _, h, w = output.shape
        kind = counts["deform" if isinstance(layer, DeformConv2D) else "conv"]
        kind[0] += 1
        kind[1] += 2 * math.prod(layer.weight.shape) * h * w * n

    handles = [layer.register_forward_post_hook(hook) for layer in model.sublayers()
               if isinstance(layer, (nn.Conv2D, DeformConv2D))]
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.to_tensor(batch))
    finally:
        for handle in handles:
            handle.remove()
    return {kind: tuple(value) for kind, value in counts.items()}


def network_flops(cfg, paths, style):
    """Mean conv FLOPs per image of the config's network over ``paths``, each at its padded
    input size (:func:`conv_flops`, one forward pass per distinct size; the weights do not
    matter), and the {(H, W): count} of those sizes."""
    from model import build_model

    sizes = {}
    for path in paths:
        chw = preprocess(read_image(path), cfg.test_size, cfg.pixel_mean, cfg.pixel_std,
                         style)[0]
        shape = padded_shape(*chw.shape[1:])
        sizes[shape] = sizes.get(shape, 0) + 1
    model = build_model(cfg)
    per_size = {shape: sum(flops for _, flops in
                           conv_flops(model, np.zeros((1, 3, *shape), np.float32)).values())
                for shape in sizes}
    return sum(per_size[s] * n for s, n in sizes.items()) / len(paths), sizes


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


def postprocess_steps(outputs, crop_hw, ori_hw, cfg, repeats):
    """Where the numpy post-processing of one image's network ``outputs`` goes: median ms
    of scoring (steps 1-4 and the cut to nms_pre), Matrix NMS and pasting, how many masks
    were scored, and the kernel x mask-feature products of those masks timed alone, batch
    by batch as the scoring runs them (one BLAS thread): the share that no reordering of
    the other steps can remove. Returns a dict."""
    post = build_postprocess(cfg)
    test_cfg = cfg.test_cfg
    cate, kernels, feat = (outputs[k][0] for k in ("cate_scores", "kernels", "mask_feat"))
    flat_feat = feat.reshape(len(feat), -1)
    steps = {"scoring": [], "nms": [], "paste": [], "products": []}
    for _ in range(repeats + 1):  # the first pass warms up
        start = time.perf_counter()
        with one_blas_thread():
            probs, masks, labels, scores = scored_candidates(cate, kernels, feat,
                                                             post.cell_strides, test_cfg,
                                                             post.threads)
            scored = time.perf_counter()
            scores = matrix_nms(masks, labels, scores, test_cfg.nms_kernel, test_cfg.nms_sigma)
        nms_done = time.perf_counter()
        keep = kept_after_nms(scores, test_cfg)
        paste_masks(probs.take(keep).reshape(len(keep), *feat.shape[1:]), crop_hw, ori_hw,
                    test_cfg.mask_thr)
        pasted = time.perf_counter()
        with one_blas_thread():
            products = time.perf_counter()
            for block in probs.blocks:
                np.negative(kernels[:len(block)]) @ flat_feat
            products = time.perf_counter() - products
        for name, seconds in (("scoring", scored - start), ("nms", nms_done - scored),
                              ("paste", pasted - nms_done), ("products", products)):
            steps[name].append(1000 * seconds)
    result = {name: statistics.median(ms[1:]) for name, ms in steps.items()}
    rows = sum(len(block) for block in probs.blocks)
    result.update(masks=rows, candidates=int((cate > test_cfg.score_thr).sum()),
                  gflop=2.0 * rows * flat_feat.shape[0] * flat_feat.shape[1] / 1e9)
    return result


def steps_line(image, steps, results):
    """The post-processing steps of :func:`postprocess_steps` against the fastest forward."""
    forwards = {engine: statistics.median(stages["forward"])
                for engine, (_, stages) in results.items() if "forward" in stages}
    total = steps["scoring"] + steps["nms"] + steps["paste"]
    line = (f"numpy post-processing of {image} ({steps['candidates']} candidates), median ms: "
            f"scoring {steps['scoring']:.0f} ({steps['masks']} masks scored; their kernel x "
            f"mask-feature products, {steps['gflop']:.2f} GFLOP, take {steps['products']:.0f} "
            f"alone at one BLAS thread), Matrix NMS {steps['nms']:.0f}, paste "
            f"{steps['paste']:.0f}; total {total:.0f}")
    if forwards:
        engine = min(forwards, key=forwards.get)
        forward = forwards[engine]
        line += (f" = {100 * total / forward:.1f}% of the fastest forward ({engine}, "
                 f"{forward:.0f} ms), the products alone {100 * steps['products'] / forward:.1f}%")
    return line


def table(results):
    """The speed table: median images/s (min-max) and median ms per stage per backend, the
    post-processing's share of the forward pass, and images/s as a share of 1 / forward
    (what the network alone would allow)."""
    headers = ["engine", "images/s (min-max)"] + [f"{label} ms" for _, label in STAGES] + [
        "post / forward", "images/s x forward"]
    rows = []
    for engine, (rates, stages) in results.items():
        med = {stage: statistics.median(v) for stage, v in stages.items()}
        row = [engine, f"{statistics.median(rates):.3f} ({min(rates):.3f}-{max(rates):.3f})"]
        row += [f"{med[stage]:.0f}" if stage in med else "-" for stage, _ in STAGES]
        forward = med.get("forward")
        row.append(f"{100 * med.get('postprocess', 0) / forward:.1f}%" if forward else "-")
        row.append(f"{statistics.median(rates) * forward / 1000:.2f}" if forward else "-")
        rows.append(row)
    return tabulate(rows, headers=headers, disable_numparse=True)


def gemm_bound(rates, flops, sizes, results):
    """Lines comparing the fastest network pass with what the convolutions would cost at
    the machine's best matmul rate.

    rates: list of :func:`gemm_rate` dicts (measured before and after the engines); flops,
    sizes: :func:`network_flops`; results: engine -> (images/s, stages) of time_engine.
    """
    best_name, best = max(((name, rate) for measured in rates for name, rate in measured.items()),
                          key=lambda pair: pair[1])
    listed = ", ".join(f"{name} {max(m[name] for m in rates):.0f}" for name in rates[0])
    shapes = ", ".join(f"{h}x{w}" + (f" ({n} images)" if n > 1 else "")
                       for (h, w), n in sizes.items())
    bound = 1000 * flops / (best * 1e9)
    lines = [f"GEMM bound: best fp32 matmul {best:.0f} GFLOP/s ({best_name}; {listed}; "
             f"{GEMM_SIZE}x{GEMM_SIZE}, best of {GEMM_REPEATS}, before and after the engines)",
             f"  network convolutions {flops / 1e9:.1f} GFLOP per image (mean over the padded "
             f"inputs {shapes}; every Conv2D and DCNv2 DeformConv2D, offset convs included, "
             "2*Cin/groups*kh*kw*Cout*Hout*Wout; not norms, activations, resizes or DCN "
             f"sampling): at least {bound:.0f} ms per image"]
    forwards = {engine: statistics.median(stages["forward"])
                for engine, (_, stages) in results.items() if "forward" in stages}
    if forwards:
        engine = min(forwards, key=forwards.get)
        lines.append(f"  fastest network pass: {engine} {forwards[engine]:.0f} ms = "
                     f"{forwards[engine] / bound:.2f}x the bound")
    return "\n".join(lines)


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
