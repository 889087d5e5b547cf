"""Building what training needs from a config: data loader, model, loss, optimizer, EMA,
and the whole run (:func:`build_run`) that train.py starts.

train.py and tools/benchmark_pipeline.py both build through these functions, so what is
measured is what trains.
"""

import os
from dataclasses import dataclass

import paddle
import paddle.distributed as dist

from model import build_model, build_postprocess
from model.loss import SOLOv2Loss

from ..data.coco import CocoSet, write_training_classes
from ..data.preprocess import preprocess_style
from ..data.targets import TargetCollator
from ..data.train_set import CocoTrainSet
from ..data.transforms import TrainTransform
from ..errors import ConfigError, UserError
from ..weights.describe import description
from .checkpoints import start_iteration
from .optim import ModelEMA, build_optimizer, freeze_backbone, scaled_lr
from .sampler import ShardedBatchSampler
from .trainer import Trainer, TrainLog
from .workers import ExitWithParent


def build_train_set(cfg, seed=0):
    """The training set with the config's augmentation, resized as the config's reference
    resized (its native preprocessing style unless the config names one)."""
    style = preprocess_style(cfg)
    return CocoTrainSet(cfg.train_path, cfg.train_pre_path, TrainTransform(cfg, style),
                        seed=seed, resize=(cfg.train_sizes, cfg.train_max_size, style))


def build_train_loader(cfg, dataset, num_workers=None, rank=None, world_size=None, seed=0):
    """(loader, batch sampler). The sampler gives process ``rank`` of ``world_size``
    (default: this process's place in paddle.distributed) its own disjoint shard of each
    epoch, in an order drawn from ``seed`` and the epoch (tools/training/sampler.py); call
    ``sampler.set_epoch(e)`` for a new order each epoch. Incomplete last batches are
    dropped, as PaddleDetection does (drop_last: true)."""
    rank = dist.get_rank() if rank is None else rank
    world_size = dist.get_world_size() if world_size is None else world_size
    sampler = ShardedBatchSampler(len(dataset), cfg.train_cfg.batch_size, rank, world_size,
                                  seed=seed)
    if len(sampler) == 0:
        raise ConfigError(f"{len(dataset)} usable training images cannot fill one batch of "
                          f"{cfg.train_cfg.batch_size} per process; lower "
                          "train_cfg.batch_size")
    workers = cfg.train_cfg.num_workers if num_workers is None else num_workers
    collate = TargetCollator(cfg.num_grids, cfg.scale_ranges, cfg.sigma)
    # Persistent workers: a small dataset would otherwise restart them every epoch. Each
    # worker ends when this process dies, even by SIGKILL (tools/training/workers.py).
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                  num_workers=workers, return_list=True,
                                  persistent_workers=workers > 0,
                                  worker_init_fn=ExitWithParent() if workers > 0 else None)
    return loader, sampler


class HeadOutputs(paddle.nn.Layer):
    """The forward pass training differentiates: ``model.head_outputs`` as a layer, so that
    paddle.DataParallel can wrap it (DataParallel syncs gradients of what its forward ran).
    forward(images [N, 3, H, W]) -> (cate_logits, kernels, mask_feat) as SOLOv2.head_outputs.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.head_outputs(images)


def build_criterion(cfg):
    """The SOLOv2 loss: focal loss on the category grids plus 3 x Dice on the masks,
    averaged over the positives the config's reference counts (cfg.dice_average)."""
    return SOLOv2Loss(cfg.num_classes, dice_average=cfg.dice_average)


def build_training(cfg, world_size=1, log=print):
    """(model, optimizer, ema or None, base LR) for ``cfg``, initial weights loaded."""
    from ..weights.load import load_initial_weights

    train = cfg.train_cfg
    model = build_model(cfg)
    if train.model_path:
        load_initial_weights(model, train.model_path, cfg, log=log)
    else:
        log("train_cfg.model_path is None: every weight starts from its initialiser")
    freeze_backbone(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
    if use_sync_bn(cfg, world_size, paddle.device.get_device().startswith("gpu")):
        model.backbone = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    elif world_size > 1 and cfg.backbone_norm == "train":
        log("warning: Paddle has no CPU kernel for SyncBatchNorm; each process normalises "
            "its backbone with its own batch statistics")
    base_lr = scaled_lr(train, train.batch_size * world_size)
    optimizer = build_optimizer(model, train, base_lr)
    ema = ModelEMA(model, train.ema_decay) if train.ema else None
    return model, optimizer, ema, base_lr


def use_sync_bn(cfg, world_size, on_gpu):
    """Batch statistics shared by all GPUs when the backbone trains its BatchNorm (PD2:
    norm_type sync_bn); one process keeps plain BatchNorm. Paddle implements SyncBatchNorm
    for GPUs only."""
    return world_size > 1 and cfg.backbone_norm == "train" and on_gpu


def build_evaluation(cfg, model):
    """``evaluate() -> {AP, AP50, ...}``: periodic mask AP of ``model`` on the validation
    set, through the same pass as eval.py (tools.evaluation.predict.evaluate_segm)."""
    from ..evaluation.predict import evaluate_segm

    coco = CocoSet(cfg.val_path, cfg.val_pre_path)
    coco.check_classes(cfg.num_classes)
    postprocess, style = build_postprocess(cfg), preprocess_style(cfg)
    return lambda: evaluate_segm(model, postprocess, cfg, coco, style)


def distributed_info():
    """(rank, world size), initialising the process group when launched on several
    devices by ``python -m paddle.distributed.launch``."""
    world = dist.get_world_size()
    if world > 1:
        dist.init_parallel_env()
    return dist.get_rank(), world


@dataclass
class Run:
    """A training run ready to start: ``trainer.train(loader, sampler, start, best_ap)``."""

    trainer: Trainer
    loader: object
    sampler: object
    start: int       # first iteration (0, or where the resumed checkpoint stopped)
    best_ap: float   # best periodic mask AP so far (-inf for a new run)


def same_start_everywhere(start, world_size, gather=None):
    """Refuse to train when the processes would start at different iterations: on several
    machines that means their output folders differ (a resume found the checkpoint on one
    machine only), and they would follow different LR schedules and never finish together.
    ``gather(value) -> [value of each process]`` defaults to paddle.distributed.all_gather."""
    if world_size <= 1:
        return
    if gather is None:
        def gather(value):
            found = []
            dist.all_gather(found, paddle.to_tensor([value], dtype="int64"))
            return [int(t.numpy().ravel()[0]) for t in found]
    starts = gather(start)
    if len(set(starts)) > 1:
        raise UserError(f"the processes would start at different iterations {starts}: "
                        "every machine must see the same train_cfg.output_dir (a shared "
                        "folder, or the checkpoint copied to the same path on each) before "
                        "--resume")


def build_run(cfg, rank=0, world_size=1, seed=0, resume=False, amp=False, log=None,
              overrides=()):
    """Everything train.py needs for ``cfg``: data, model, loss, optimizer, the resumed
    state, the evaluation hook (rank 0) and the Trainer. Outputs go to
    train_cfg.output_dir/<config name>/. ``log``: the run's TrainLog (None opens one);
    ``overrides``: the ``key=value`` words ``cfg`` was loaded with, recorded in the model
    files so that they describe themselves (tools/weights/describe.py)."""
    output_dir = os.path.join(cfg.train_cfg.output_dir, cfg.name)
    os.makedirs(output_dir, exist_ok=True)
    if log is None:
        log = TrainLog(output_dir, enabled=rank == 0)
    dataset = build_train_set(cfg, seed=seed + 1000 * rank)
    log(f"training set: {len(dataset)} images from {cfg.train_path}; {dataset.summary()}")
    classes = write_training_classes(cfg, dataset.coco, output_dir, log)
    # The same seed on every process: the shards are parts of one permutation.
    loader, sampler = build_train_loader(cfg, dataset, rank=rank, world_size=world_size,
                                         seed=seed)
    model, optimizer, ema, base_lr = build_training(cfg, world_size, log=log)
    start, best_ap = start_iteration(output_dir, resume, model, optimizer, ema, log)
    same_start_everywhere(start, world_size)
    evaluate = None
    if rank == 0 and cfg.train_cfg.eval_iter and cfg.val_path:
        evaluate = build_evaluation(cfg, model)
    net = HeadOutputs(model)
    if world_size > 1:
        net = paddle.DataParallel(net)
    meta = dict(description(cfg, overrides, dataset.coco.class_names, preprocess_style(cfg)),
                format="trained", classes=classes)
    trainer = Trainer(cfg, model, net, build_criterion(cfg), optimizer, ema, base_lr,
                      output_dir, rank, world_size, amp=amp, evaluate=evaluate, meta=meta,
                      log=log)
    return Run(trainer, loader, sampler, start, best_ap)
