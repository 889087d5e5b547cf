"""Speed of every engine on the same images and weights, per stage, with the spread.

    python tools/benchmark.py --config=2                         # test_cfg.model_path
    python tools/benchmark.py --config=2 --fixture-weights       # no published weights here
    python tools/benchmark.py --config=2 --quick                 # smoke run: tiny input, 1 image

For each engine (dygraph, paddle-inference, onnx) the images go through the shared loop
(tools/inference/predictor.py) as demo.py runs them (the measuring code is
tools/deploy/benchmark.py), drawing and PNG-encoding each result in memory
instead of writing it. One warm-up pass, then ``--repeats`` timed passes; the table shows
the median images/s over the passes with its min-max, and the median ms per image of each
stage: read, preprocess, forward (network), postprocess (everything after the network,
inside the exported graph for the exported engines) and draw (draw + encode). Stages run in
overlapping threads, so images/s is not 1000 / (sum of stages). Two shares follow: the
post-processing's ms over the forward's, and images/s times the forward's seconds (1.00
when everything but the network is hidden behind it).

The GEMM bound at the end: the machine's best fp32 matmul rate (numpy's OpenBLAS and
Paddle's MKL, 2048 x 2048, best of 3, measured before and after the engines), the
convolution FLOPs of the network at the images' padded input sizes (counted with forward
hooks on every conv of the dygraph model, DCN included), the time those FLOPs take at that
rate, and the fastest engine's forward pass as a multiple of it.

The exported engines run as demo.py runs them (``--mode network``): the network graph in
the engine, then the same numpy post-processing as the dygraph engine; ``--mode graph``
runs the one graph with post-processing inside that deployments use, ``--mode split`` its
network and post-processing graphs apart. The model is exported once into the cache folder.
Matrix NMS is also timed on its own, on 500 random masks of the mask-feature size of a
padded test-size image.

--overlap also times every engine with the post-processing and drawing of image i in the
loop's consumer threads while image i+1 goes through the network, interleaved pass by pass
with the usual order (post-processing right after each network pass).

--compare-ppdet (with paddledet installed, a development dependency) builds
PaddleDetection 2.6's SOLOv2 with this config's architecture and the same weights, checks
that its raw outputs equal ours on the first image, and times the two network forwards
interleaved at 1 thread (PaddleDetection's default) and at every core
(tools/dev/ppdet_compare.py); configs 0, 2 and 3 have a PaddleDetection 2.6 twin.

--fixture-weights uses the deterministic stand-in weights of tools/weights/standin.py (the
published files' containers, synthetic values), for machines without the published files:
the network costs what it costs with real weights, but about 4% of all (cell, class) pairs
score above score_thr, so the post-processing scores some 12,000 candidates per image. ``--sweep``
times the post-processing alone with only the best N of them, and splits that of the first
image with all its candidates into its steps: scoring, Matrix NMS, pasting, and the kernel x
mask-feature products of the masks scored, timed alone (what the scoring cannot go below).
"""

import os
import statistics
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import (  # noqa: E402
    config_parser,
    load_config,
    positive_int,
    positive_int_list,
)
from tools.data.coco import load_class_names  # noqa: E402
from tools.data.preprocess import list_images  # noqa: E402
from tools.deploy.benchmark import (  # noqa: E402
    ensure_export,
    fixture_weights,
    gemm_bound,
    gemm_rate,
    network_flops,
    network_outputs,
    overlap_line,
    postprocess_steps,
    postprocess_sweep,
    steps_line,
    sweep_table,
    table,
    time_engine,
    time_matrix_nms,
    time_overlap,
)
from tools.errors import ConfigError, entry_point  # noqa: E402
from tools.inference.backends import BACKENDS, MODES, load_backend  # noqa: E402


def parse_args(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--engines", default=",".join(BACKENDS),
                        help=f"comma-separated, from {', '.join(BACKENDS)} (default all)")
    parser.add_argument("--input", default="images/test", help="image file, folder or glob")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed passes per engine")
    parser.add_argument("--weights", help="weight file (default test_cfg.model_path)")
    parser.add_argument("--fixture-weights", action="store_true",
                        help="use the deterministic test weights (see above)")
    parser.add_argument("--model-dir", help="exported folder made with --split (default: "
                        "exported into --cache)")
    parser.add_argument("--cache", default=".benchmark_cache",
                        help="where fixture weights and the export are kept")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads of the exported engines (default: every core)")
    parser.add_argument("--sweep", type=positive_int_list,
                        help="also time the post-processing alone with the best N "
                             "candidates of the first image, for each N in a comma list")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: test_size=(128, 192), one image, one timed pass")
    parser.add_argument("--mode", choices=MODES, default="network",
                        help="how the exported engines run: network (the network graph, then "
                             "the numpy post-processing, as demo.py runs them; default), graph "
                             "(the one graph with post-processing inside), split (network and "
                             "post-processing graphs, timed apart)")
    parser.add_argument("--overlap", action="store_true",
                        help="also time each engine with its post-processing in the drawing "
                             "threads, overlapping the next image's network pass (passes "
                             "interleaved with the usual order)")
    parser.add_argument("--compare-ppdet", action="store_true",
                        help="also time PaddleDetection 2.6's SOLOv2 (same architecture, "
                             "weights and input; needs paddledet, requirements-dev.txt) "
                             "beside our network, at 1 thread and at every core")
    return parser.parse_intermixed_args(argv)


@entry_point
def main(argv=None):
    args = parse_args(argv)
    overrides = list(args.overrides) + (["test_size=(128, 192)"] if args.quick else [])
    cfg = load_config(args.config, overrides)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown engines {unknown}; choose from {BACKENDS}")
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
    rates = [gemm_rate()]
    results, notes, sweeps, overlaps, outputs = {}, [], {}, {}, None
    for engine in engines:
        predictor, style = load_backend(engine, cfg, model_path=weights, model_dir=model_dir,
                                        threads=args.threads, mode=args.mode)
        results[engine] = time_engine(predictor, style, cfg, paths, repeats, class_names)
        if getattr(predictor, "description", engine) != engine:  # e.g. how oneDNN ran
            notes.append(predictor.description)
        print(f"{engine}: {statistics.median(results[engine][0]):.3f} images/s", flush=True)
        if args.overlap:
            overlaps[engine] = time_overlap(predictor, style, cfg, paths, repeats,
                                            class_names)
        if args.sweep:
            if outputs is None:
                outputs = network_outputs(cfg, weights, paths[0], style)
            sweeps[engine] = postprocess_sweep(engine, predictor, *outputs, cfg, args.sweep,
                                               repeats)
    steps = None
    if args.sweep:  # the steps of the sweep's image with all its candidates
        steps = postprocess_steps(*outputs, cfg, repeats)
    nms = time_matrix_nms(cfg, repeats)
    rates.append(gemm_rate())
    flops, sizes = network_flops(cfg, paths, style)
    side = None
    if args.compare_ppdet:  # a development dependency: imported only when asked for
        from tools.dev.ppdet_compare import compare_ppdet

        side = compare_ppdet(cfg, weights, paths[0], repeats)
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
    if overlaps:
        print("\npost-processing overlapped with the next network pass (median images/s, "
              "passes interleaved):")
        for engine, passes in overlaps.items():
            print(overlap_line(engine, passes))
    if steps is not None:
        print(steps_line(os.path.basename(paths[0]), steps, results))
    print(f"Matrix NMS, 500 masks of {nms[3][0]}x{nms[3][1]} (dygraph): "
          f"{1000 * nms[0]:.0f} ms median ({1000 * nms[1]:.0f}-{1000 * nms[2]:.0f})")
    print(gemm_bound(rates, flops, sizes, results))
    if side is not None:
        print(side.table(results.get("dygraph")))
    if "dygraph" in results and len(results) > 1:
        base = statistics.median(results["dygraph"][0])
        best = max((e for e in results if e != "dygraph"),
                   key=lambda e: statistics.median(results[e][0]))
        print(f"fastest exported engine: {best}, "
              f"{statistics.median(results[best][0]) / base:.2f}x dygraph images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
