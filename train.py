"""Train SOLOv2 on COCO or on any COCO-style dataset.

    python train.py --config=2                                  # COCO, reference schedule
    python train.py --config=2 --resume                         # continue the newest checkpoint
    python train.py --config=1 num_classes=3 train_path=... train_pre_path=... \\
        val_path=... val_pre_path=... classes_path=...          # your own data
    python -m paddle.distributed.launch --gpus 0,1,2,3 train.py --config=2

Outputs go to OUTPUT/CONFIG_NAME/ (OUTPUT = train_cfg.output_dir): train.log,
checkpoints/iter_*.pdparams, best_model.pdparams (best periodic mask AP),
model_final.pdparams and classes.txt; the two model files load in demo.py and eval.py.
"""

import argparse
import math
import os
import sys

from config import add_config_arguments, config_table, load_config
from tools.checkpoint_io import WeightFileError
from tools.checkpoints import checkpoint_dir, list_checkpoints, load_latest, restore
from tools.coco import AnnotationError
from tools.convert import ConversionError
from tools.engine import NonFiniteLoss, Trainer
from tools.predictor import use_all_cpu_cores
from tools.train_setup import (
    build_evaluation,
    build_train_loader,
    build_train_set,
    build_training,
    distributed_info,
    training_style,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in the output folder")
    parser.add_argument("--amp", action="store_true",
                        help="automatic mixed precision (needs a CUDA GPU)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the augmentation")
    return parser.parse_args(argv)


class UserError(Exception):
    """Bad input: printed as one clean message, exit status 1."""


def check_classes(cfg, dataset, output_dir, log):
    """Class names come from the annotation file; a classes_path that names other classes
    is reported. The names are written to OUTPUT/classes.txt for demo.py / eval.py."""
    dataset.coco.check_classes(cfg.num_classes)
    names = dataset.class_names
    if cfg.classes_path and os.path.exists(cfg.classes_path):
        with open(cfg.classes_path, encoding="utf-8") as f:
            listed = [line.strip() for line in f if line.strip()]
        if listed != names:
            log(f"warning: {cfg.classes_path} does not list the annotation file's classes in "
                f"label order; predictions will be labelled with {output_dir}/classes.txt")
    with open(os.path.join(output_dir, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")


def start_iteration(args, cfg, output_dir, model, optimizer, ema, log):
    """(first iteration, best mask AP so far): (0, -inf) for a new run, else what the
    newest checkpoint recorded."""
    folder = checkpoint_dir(output_dir)
    if not args.resume:
        existing = list_checkpoints(folder)
        if existing:
            raise UserError(f"{folder} already holds checkpoints up to iteration "
                            f"{existing[-1][0]}; pass --resume to continue that run, or set "
                            "train_cfg.output_dir to a new folder")
        return 0, -math.inf
    found = load_latest(folder, log=log)
    if found is None:
        log(f"--resume: no checkpoint in {folder}; starting at iteration 0")
        return 0, -math.inf
    _, arrays, meta, path = found
    iteration = restore(arrays, meta, model, optimizer, ema)
    log(f"resumed from {path} at iteration {iteration}")
    return iteration, float(meta.get("best_ap", "-inf"))


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    import paddle

    rank, world = distributed_info()
    log = print if rank == 0 else (lambda *a, **k: None)
    if args.amp and not paddle.device.is_compiled_with_cuda():
        print("error: --amp needs a CUDA build of Paddle and a GPU; this one runs on CPU",
              file=sys.stderr)
        return 1
    paddle.seed(args.seed)
    if not paddle.is_compiled_with_cuda():
        use_all_cpu_cores(processes=world)
    log(config_table(cfg))
    output_dir = os.path.join(cfg.train_cfg.output_dir, cfg.name)
    os.makedirs(output_dir, exist_ok=True)
    try:
        dataset = build_train_set(cfg, seed=args.seed + 1000 * rank)
        log(f"training set: {len(dataset)} images from {cfg.train_path}; {dataset.summary()}")
        check_classes(cfg, dataset, output_dir, log)
        loader, sampler = build_train_loader(cfg, dataset)
        model, optimizer, ema, base_lr = build_training(cfg, world, log=log)
        start, best_ap = start_iteration(args, cfg, output_dir, model, optimizer, ema, log)
        evaluate = None
        if rank == 0 and cfg.train_cfg.eval_iter and cfg.val_path:
            from tools.train_eval import evaluate_segm

            val_set, postprocess = build_evaluation(cfg)
            evaluate = lambda: evaluate_segm(model, postprocess, cfg, val_set,  # noqa: E731
                                             training_style(cfg))
    except (AnnotationError, WeightFileError, ConversionError, FileNotFoundError,
            ValueError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    net = paddle.DataParallel(model) if world > 1 else model
    meta = {"format": "trained", "config": cfg.name, "preprocess": training_style(cfg),
            "classes": os.path.join(output_dir, "classes.txt")}
    trainer = Trainer(cfg, model, net, optimizer, ema, base_lr, output_dir, rank, world,
                      amp=args.amp, evaluate=evaluate, meta=meta)
    try:
        trainer.train(loader, sampler, start, best_ap)
    except NonFiniteLoss:
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume from the last checkpoint",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
