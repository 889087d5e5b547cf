"""Draw a training run's loss (and each loss part) and mask AP curves to a PNG.

    python tools/plot_metrics.py output/solov2_light_shapes_tour
    python tools/plot_metrics.py output/solov2_light_shapes_tour --output curves.png

OUTPUT_DIR is the run's folder (train_cfg.output_dir/<config name>), whose metrics.jsonl
train.py writes; the picture goes to OUTPUT_DIR/metrics.png unless --output names another
file. Needs matplotlib (requirements-dev.txt). Works while training runs, and on the
file a killed run left.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.errors import MissingInputError, entry_point  # noqa: E402
from tools.training.metrics import curve, metrics_path, plot_metrics, read_metrics  # noqa: E402


@entry_point
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="the run's folder")
    parser.add_argument("--output", metavar="PNG", help="default OUTPUT_DIR/metrics.png")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        raise MissingInputError(f"{args.output_dir} is not a folder; give the run's folder, "
                                "train_cfg.output_dir/<config name>")
    records = read_metrics(metrics_path(args.output_dir))
    name = os.path.basename(os.path.normpath(args.output_dir))
    png = plot_metrics(records, args.output or os.path.join(args.output_dir, "metrics.png"),
                       title=name)
    iters, _ = curve(records, "train/loss")
    evals, aps = curve(records, "eval/AP")
    last = f", last mask AP {aps[-1]:.4f} at iteration {evals[-1]}" if evals else ""
    print(f"{png}: loss over {len(iters)} log points up to iteration "
          f"{iters[-1] if iters else 0}{last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
