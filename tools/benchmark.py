"""Speed of every engine on the same images and weights, per stage, with the spread.

    python tools/benchmark.py --config=2                         # test_cfg.model_path
    python tools/benchmark.py --config=2 --fixture-weights       # no published weights here
    python tools/benchmark.py --config=2 --quick                 # smoke run: tiny input, 1 image

For each engine (dygraph, paddle-inference, onnx) the images go through the shared loop
(tools/inference/predictor.py) as demo.py runs them, drawing and PNG-encoding each result in memory
instead of writing it. One warm-up pass, then ``--repeats`` timed passes; the table shows
the median images/s over the passes with its min-max, and the median ms per image of each
stage: read, preprocess, forward (network), postprocess (everything after the network,
inside the exported graph for the exported engines) and draw (draw + encode). Stages run in
overlapping threads, so images/s is not 1000 / (sum of stages).

The exported engines run the network and post-processing graphs that
``tools/export_model.py --split`` saves, so the two are timed apart; the model is exported
once into the cache folder. Matrix NMS is also timed on its own, on 500 random masks of the
mask-feature size of a padded test-size image.

--fixture-weights uses the deterministic stand-in weights of tools/weights/standin.py (the
published files' containers, synthetic values), for machines without the published files:
the network costs what it costs with real weights, but about 4% of all (cell, class) pairs
score above score_thr, so the post-processing scores some 12,000 candidates per image. ``--sweep``
times the post-processing alone with only the best N of them.
"""

import os
import statistics
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from tools.errors import entry_point  # noqa: E402

STAGES = (("read", "read"), ("preprocess", "preprocess"), ("forward", "forward"),
          ("postprocess", "postprocess"), ("consume", "draw"))


def fixture_weights(cfg, folder):
    """Deterministic stand-in weights for ``cfg`` (tools/weights/standin.py), written in the
    published container and converted into ``folder``; returns the converted path (cached)."""
    from tools.errors import MissingInputError
    from tools.weights.standin import CONTAINERS, converted_checkpoint

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
    from tools.deploy.export import export
    from tools.inference.backends import BackendError, postprocess_settings, read_deploy_info

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
    import cv2

    from tools.inference.predictor import StageTimes, predict_stream
    from tools.inference.visualize import draw_instances

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
    from model.postprocess import matrix_nms
    from tools.data.preprocess import padded_shape

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
    import paddle

    from tools.data.preprocess import pad_batch, preprocess, read_image
    from tools.inference.backends import load_dygraph

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
    from tools.inference.backends import shape_feeds

    def run(cate_scores):
        if engine == "dygraph":
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
    from tabulate import tabulate

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
    from tabulate import tabulate

    counts = list(next(iter(sweeps.values())))
    rows = []
    for engine, times in sweeps.items():
        forward = statistics.median(results[engine][1]["forward"])
        rows.append([engine] + [f"{times[n]:.0f} ({100 * times[n] / forward:.1f}%)"
                                for n in counts])
    return tabulate(rows, headers=["engine"] + [f"N={n} (of forward)" for n in counts],
                    disable_numparse=True)


def parse_args(argv=None):
    from config import config_parser
    from tools.inference.backends import BACKENDS as ENGINES

    parser = config_parser(__doc__)
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"comma-separated, from {', '.join(ENGINES)} (default all)")
    parser.add_argument("--input", default="images/test", help="image file, folder or glob")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per engine")
    parser.add_argument("--weights", help="weight file (default test_cfg.model_path)")
    parser.add_argument("--fixture-weights", action="store_true",
                        help="use the deterministic test weights (see above)")
    parser.add_argument("--model-dir", help="exported folder made with --split (default: "
                        "exported into --cache)")
    parser.add_argument("--cache", default=".benchmark_cache",
                        help="where fixture weights and the export are kept")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the exported engines (default: every core)")
    parser.add_argument("--sweep", type=lambda t: [int(n) for n in t.split(",")],
                        help="also time the post-processing alone with the best N "
                             "candidates of the first image, for each N in a comma list")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: test_size=(128, 192), one image, one timed pass")
    return parser.parse_intermixed_args(argv)


@entry_point
def main(argv=None):
    from config import load_config
    from tools.data.coco import load_class_names
    from tools.data.preprocess import list_images
    from tools.errors import ConfigError
    from tools.inference.backends import BACKENDS as ENGINES
    from tools.inference.backends import load_backend

    args = parse_args(argv)
    overrides = list(args.overrides) + (["test_size=(128, 192)"] if args.quick else [])
    cfg = load_config(args.config, overrides)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ConfigError(f"unknown engines {unknown}; choose from {ENGINES}")
    paths = list_images(args.input)[:1 if args.quick else None]
    repeats = 1 if args.quick else args.repeats
    folder = os.path.join(args.cache, cfg.name)
    weights = (fixture_weights(cfg, folder) if args.fixture_weights
               else args.weights or cfg.test_cfg.model_path)
    model_dir = args.model_dir or os.path.join(folder, "export")
    if any(e != "dygraph" for e in engines) and not args.model_dir:
        ensure_export(cfg, weights, model_dir)
    class_names = load_class_names(cfg)

    load_before = os.getloadavg()
    results, notes, sweeps, outputs = {}, [], {}, None
    for engine in engines:
        predictor, style = load_backend(engine, cfg, model_path=weights, model_dir=model_dir,
                                        threads=args.threads, split=True)
        results[engine] = time_engine(predictor, style, cfg, paths, repeats, class_names)
        if getattr(predictor, "description", engine) != engine:  # e.g. how oneDNN ran
            notes.append(predictor.description)
        print(f"{engine}: {statistics.median(results[engine][0]):.3f} images/s", flush=True)
        if args.sweep:
            if outputs is None:
                outputs = network_outputs(cfg, weights, paths[0], style)
            sweeps[engine] = postprocess_sweep(engine, predictor, *outputs, cfg, args.sweep,
                                               repeats)
    nms = time_matrix_nms(cfg, repeats)
    load_after = os.getloadavg()

    print(f"\nconfig {args.config} ({cfg.name}), test_size {cfg.test_size}, {len(paths)} images "
          f"from {args.input}, {repeats} timed passes after a warm-up; weights "
          f"{'fixture (synthetic)' if args.fixture_weights else weights}")
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after (1 min)")
    print(table(results))
    for note in notes:
        print(f"  {note}")
    if sweeps:
        total = int((outputs[0]["cate_scores"] > cfg.test_cfg.score_thr).sum())
        print(f"\npost-processing alone, ms, on {os.path.basename(paths[0])} ({total} "
              f"candidates above score_thr={cfg.test_cfg.score_thr}) cut to the best N:")
        print(sweep_table(sweeps, results))
    print(f"Matrix NMS, 500 masks of {nms[3][0]}x{nms[3][1]} (dygraph): "
          f"{1000 * nms[0]:.0f} ms median ({1000 * nms[1]:.0f}-{1000 * nms[2]:.0f})")
    if "dygraph" in results and len(results) > 1:
        base = statistics.median(results["dygraph"][0])
        best = max((e for e in results if e != "dygraph"),
                   key=lambda e: statistics.median(results[e][0]))
        print(f"fastest exported engine: {best}, "
              f"{statistics.median(results[best][0]) / base:.2f}x dygraph images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
