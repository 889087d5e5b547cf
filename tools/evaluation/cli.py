"""The command-line pieces eval.py and test_dev.py share: arguments, the config check,
loading the set and the model, and where results go."""

import os

from config import config_parser, config_table, positive_int

from ..data.coco import CocoSet
from ..device import select_device
from ..inference.backends import add_engine_arguments, default_model_dir, load_backend
from ..weights.describe import load_described_config, summary
from ..weights.files import WeightFileError


def eval_parser(description, output_metavar, output_help):
    """The parser eval.py and test_dev.py start from: --config, key=value, --weights,
    --workers, --engine, --model-dir and --output (what it names differs: ``output_help``)."""
    parser = config_parser(description, weights=True)
    parser.add_argument("--output", metavar=output_metavar, help=output_help)
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="reader and encoder threads each")
    add_engine_arguments(parser)
    return parser


def load_eval_config(args):
    """The config of ``args``, printed as a table; ConfigError for an unknown field or an
    unusable value (config/checks.py). A weight file written by train.py (--weights, or
    a model_path override) gives the config number, its overrides and num_classes
    (tools/weights/describe.py)."""
    cfg, described = load_described_config(args.config, args.overrides, args.weights,
                                           "eval_cfg")
    print(config_table(cfg))
    if described:
        print(summary(described))
    return cfg


def load_set_and_model(cfg, args, ann_file, image_dir):
    """(CocoSet, predictor, preprocessing style, weights source) for eval.py and
    test_dev.py: the dygraph model with ``eval_cfg.model_path``, or the exported model that
    ``args.engine`` and ``args.model_dir`` name. Prints one line on what will run. Raises
    a UserError (annotations, weights, exported folder) with a message for the user."""
    coco = CocoSet(ann_file, image_dir)
    coco.check_classes(cfg.num_classes)
    if args.engine == "dygraph" and not cfg.eval_cfg.model_path:
        raise WeightFileError("no weights given: pass --weights FILE or set model_path=PATH "
                              "(or eval_cfg.model_path)")
    predictor, style = load_backend(args.engine, cfg, cfg.eval_cfg.model_path, args.model_dir,
                                    device=select_device(args.device),
                                    tensorrt=args.tensorrt, download=not args.no_download)
    source = weights_source(cfg, args.engine, args.model_dir)
    print(f"{len(coco.image_ids)} images in {ann_file}; weights {source}; "
          f"preprocessing style {style!r}; batch size {cfg.eval_cfg.batch_size}")
    return coco, predictor, style, source


def weights_source(cfg, engine="dygraph", model_dir=None):
    """What the predictions come from, for messages and result folder names: the weight
    file, or '<exported folder>-<engine>'."""
    if engine == "dygraph":
        return cfg.eval_cfg.model_path
    return f"{os.path.normpath(model_dir or default_model_dir(cfg))}-{engine}"


def output_folder(cfg, model_path):
    """<eval_cfg.output_dir>/<weight file name>: results of different weights apart."""
    model = os.path.splitext(os.path.basename(model_path))[0]
    return os.path.join(cfg.eval_cfg.output_dir, model)


def default_results_path(cfg, model_path, ann_file):
    """<output_folder>/<annotation file name>_results.json"""
    ann = os.path.splitext(os.path.basename(ann_file))[0]
    return os.path.join(output_folder(cfg, model_path), f"{ann}_results.json")
