"""COCO mask AP and box AP of SOLOv2 weights on a COCO-style validation set.

    python eval.py --config=2                  # eval_cfg.model_path on val_path / val_pre_path
    python eval.py --weights output/<run>/model_final.pdparams   # config and data from the file
    python eval.py --config=0 --per-class eval_cfg.batch_size=4 --limit 500
    python eval.py --config=2 --from-json eval_results/<weights>/instances_val2017_results.json

Predictions are saved as a COCO results json (default under eval_cfg.output_dir), so AP can
be computed again with --from-json without predicting.
"""

import os
import sys

from config import positive_int
from tools.data.coco import CocoSet
from tools.errors import entry_point
from tools.evaluation.cli import (
    default_results_path,
    eval_parser,
    load_eval_config,
    load_set_and_model,
)
from tools.evaluation.predict import eval_saved, run_eval
from tools.files import check_writable


def parse_args(argv=None):
    parser = eval_parser(__doc__, "RESULTS", "where to save the results json (default: "
                         "<eval_cfg.output_dir>/<weights>/<annotations>_results.json)")
    parser.add_argument("--from-json", metavar="RESULTS",
                        help="evaluate a saved results json instead of predicting")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    return parser.parse_args(argv)


@entry_point
def main(argv=None):
    args = parse_args(argv)
    cfg = load_eval_config(args)
    if args.from_json:
        eval_saved(CocoSet(cfg.val_path, cfg.val_pre_path), args.from_json, args.per_class)
        return 0
    coco, predictor, style, model_path = load_set_and_model(cfg, args, cfg.val_path,
                                                            cfg.val_pre_path)
    results_path = args.output or default_results_path(cfg, model_path, cfg.val_path)
    check_writable(os.path.dirname(os.path.abspath(results_path)), "results folder")
    run_eval(predictor, style, cfg, coco, results_path,
             cfg.eval_cfg.batch_size, args.workers, args.limit, args.per_class,
             meta={"model_path": model_path, "config": cfg.name, "preprocess": style})
    return 0


if __name__ == "__main__":
    sys.exit(main())
