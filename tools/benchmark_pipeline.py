"""Images per second of the training data pipeline alone (no model).

    python tools/benchmark_pipeline.py --config=2 --batches 50 [key=value ...]

Builds the same dataset and loader as train.py (decode, masks, colour distortion, crop,
resize, flip, normalize, padding, SOLOv2 targets in paddle.io.DataLoader workers), runs a
warm-up of a few batches, then times ``--batches`` batches. If this number is well above
the images/s that train.py logs, the model never waits for data.
"""

import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import config_parser, load_config, nonnegative_int, positive_int  # noqa: E402
from tools.errors import entry_point  # noqa: E402
from tools.training.build import build_train_loader, build_train_set  # noqa: E402


def measure(loader, sampler, batches, warmup=3):
    """(images, seconds) over ``batches`` batches after ``warmup`` untimed ones."""
    epoch, seen, images, start = 0, 0, 0, None
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            seen += 1
            if seen == warmup:
                start = time.perf_counter()
            elif seen > warmup:
                images += batch["images"].shape[0]
                if seen == warmup + batches:
                    return images, time.perf_counter() - start
        epoch += 1


@entry_point
def main(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--batches", type=positive_int, default=50, help="timed batches")
    parser.add_argument("--workers", type=nonnegative_int,
                        help="loader workers, 0 = in this process (default train_cfg)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    dataset = build_train_set(cfg)
    loader, sampler = build_train_loader(cfg, dataset, args.workers)
    workers = cfg.train_cfg.num_workers if args.workers is None else args.workers
    images, seconds = measure(loader, sampler, args.batches)
    print(f"{cfg.name}: {images} images in {seconds:.1f} s = {images / seconds:.1f} images/s "
          f"(batch {cfg.train_cfg.batch_size}, {workers} workers, sizes {cfg.train_sizes}, "
          f"colour distortion {cfg.train_color_distort}, random crop {cfg.train_random_crop})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
