"""Predict COCO test-dev and write the results file COCO's evaluation server takes.

    python test_dev.py --config=2      # eval_cfg.model_path on test_path / test_pre_path
    python test_dev.py --weights output/<run>/model_final.pdparams   # config from the file

Writes detections_test-dev2017_solov2_results.json (instance masks as RLE) and the same
file zipped, ready to upload, under <eval_cfg.output_dir>/<weights>/ (or --output).
"""

import sys

from tools.errors import MissingInputError, entry_point
from tools.evaluation.cli import (
    eval_parser,
    load_eval_config,
    load_set_and_model,
    output_folder,
)
from tools.evaluation.predict import predict_coco
from tools.evaluation.results import write_submission
from tools.files import check_writable


def parse_args(argv=None):
    return eval_parser(__doc__, "FOLDER", "folder for the results (default "
                       "<eval_cfg.output_dir>/<weights>)").parse_args(argv)


@entry_point
def main(argv=None):
    args = parse_args(argv)
    cfg = load_eval_config(args)
    coco, predictor, style, model_path = load_set_and_model(cfg, args, cfg.test_path,
                                                            cfg.test_pre_path)
    folder = check_writable(args.output or output_folder(cfg, model_path), "results folder")
    batch_size = cfg.eval_cfg.batch_size
    preds = predict_coco(predictor, style, cfg, coco, batch_size=batch_size,
                         workers=args.workers, desc="test-dev")
    print(preds.timing(batch_size))
    for line in preds.warnings(len(coco.image_ids)):
        print(line, file=sys.stderr)
    if preds.skipped:
        print("  the server will count the unreadable images as images without detections",
              file=sys.stderr)
    if not preds.image_ids:
        raise MissingInputError(f"none of the images could be read from {cfg.test_pre_path}")
    if not preds.records:
        print("warning: no detections at all; the file holds an empty list", file=sys.stderr)
    json_path, zip_path = write_submission(preds.records, folder)
    print(f"{len(preds.records)} detections on {len(preds.image_ids)} images -> {json_path}")
    print(f"upload {zip_path} to COCO's test-dev evaluation server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
