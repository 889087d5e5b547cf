"""Make the quick tour's synthetic COCO-style dataset (see tools/data/synthetic.py).

    python tools/make_synthetic_coco.py --out data/shapes --train 200 --val 40

Writes OUT/{train,val}/*.png, OUT/annotations/instances_{train,val}.json and
OUT/classes.txt: three classes (circle, square, triangle), 1-4 instances per image.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.data.synthetic import make_dataset  # noqa: E402
from tools.errors import ConfigError, entry_point  # noqa: E402


@entry_point
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/shapes")
    parser.add_argument("--train", type=int, default=200, help="training images")
    parser.add_argument("--val", type=int, default=40, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    args = parser.parse_args(argv)
    if min(args.size) < 32 or args.train < 0 or args.val < 0:
        raise ConfigError(f"--size must be at least 32 x 32 and --train / --val at least 0, "
                          f"got size {args.size}, train {args.train}, val {args.val}")
    paths = make_dataset(args.out, args.train, args.val, args.seed, tuple(args.size))
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
