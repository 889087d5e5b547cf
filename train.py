"""Train SOLOv2 on COCO or on any COCO-style dataset.

    python train.py --config=2                                  # COCO, reference schedule
    python train.py --config=2 --resume                         # continue the newest checkpoint
    python train.py --config=1 num_classes=3 train_path=... train_pre_path=... \\
        val_path=... val_pre_path=... classes_path=...          # your own data
    python -m paddle.distributed.launch --gpus 0,1,2,3 train.py --config=2

Outputs go to OUTPUT/CONFIG_NAME/ (OUTPUT = train_cfg.output_dir): train.log (headed by
the command, commit, Paddle, device and config), metrics.jsonl (losses, LR, times, AP;
draw them with tools/plot_metrics.py), vdl/ with --vdl, checkpoints/iter_*.pdparams,
best_model.pdparams (best periodic mask AP), model_final.pdparams and classes.txt. The
two model files describe themselves: ``python demo.py --weights FILE`` needs nothing else.
"""

import os
import sys

from config import config_parser, config_table, load_config, nonnegative_int
from tools.device import use_device
from tools.errors import UserError, entry_point
from tools.files import check_writable
from tools.runtime import use_all_cpu_cores
from tools.training.build import build_run, distributed_info
from tools.training.checkpoints import checkpoint_dir
from tools.training.metrics import require_visualdl
from tools.training.runinfo import run_header
from tools.training.trainer import NonFiniteLoss, TrainLog


def parse_args(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in the output folder")
    parser.add_argument("--amp", action="store_true",
                        help="automatic mixed precision (needs a CUDA GPU)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the initial weights, the augmentation and the data order")
    parser.add_argument("--vdl", action="store_true",
                        help="also write the scalars for VisualDL into OUTPUT/vdl (needs "
                             "pip install visualdl)")
    return parser.parse_args(argv)


@entry_point
def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    import paddle

    rank, world = distributed_info()
    # Under paddle.distributed.launch each process already has its own GPU
    # (FLAGS_selected_gpus); only an explicit choice on one process is applied here.
    if world == 1 or args.device == "cpu":
        use_device(args.device)
    if args.amp and not paddle.device.get_device().startswith("gpu"):
        raise UserError("--amp needs a CUDA build of Paddle and a GPU (paddlepaddle-gpu); "
                        "this run is on the CPU")
    if args.vdl:
        require_visualdl()  # before any data is read
    paddle.seed(args.seed)
    if paddle.device.get_device() == "cpu":
        use_all_cpu_cores(processes=world)
    # Before hours of training whose checkpoints could not be saved (build_run's folder).
    run_dir = os.path.join(cfg.train_cfg.output_dir, cfg.name)
    check_writable(checkpoint_dir(run_dir), "training output folder")
    log = TrainLog(run_dir, enabled=rank == 0, vdl=args.vdl)
    try:
        log(run_header(config_table(cfg), "train.py", argv, world))
        run = build_run(cfg, rank, world, seed=args.seed, resume=args.resume, amp=args.amp,
                        log=log, overrides=args.overrides)
        run.trainer.train(run.loader, run.sampler, run.start, run.best_ap)
    except NonFiniteLoss:
        return 1  # the trainer has said where and what to do
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
