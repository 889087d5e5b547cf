"""Building what training needs from a config: data loader, model, optimizer, EMA.

train.py and tools/benchmark_pipeline.py both build through these functions, so what is
measured is what trains.
"""

import paddle
import paddle.distributed as dist

from model import build_model, build_postprocess
from model.loss import SOLOv2Loss

from .coco import CocoSet
from .optim import ModelEMA, build_optimizer, freeze_backbone, scaled_lr
from .targets import TargetCollator
from .train_data import CocoTrainSet
from .transforms import TrainTransform


def training_style(cfg):
    """The resize rule of the reference the config follows (see tools/preprocess.py)."""
    return cfg.native_preprocess if cfg.preprocess == "auto" else cfg.preprocess


def build_train_set(cfg, seed=0):
    return CocoTrainSet(cfg.train_path, cfg.train_pre_path,
                        TrainTransform(cfg, training_style(cfg)), seed=seed)


def build_train_loader(cfg, dataset, num_workers=None):
    """(loader, batch sampler). The sampler shards and shuffles the dataset across the
    processes of paddle.distributed (one process: the whole dataset); call
    ``sampler.set_epoch(e)`` for a new order each epoch. Incomplete last batches are
    dropped, as PaddleDetection does (drop_last: true)."""
    sampler = paddle.io.DistributedBatchSampler(dataset, batch_size=cfg.train_cfg.batch_size,
                                                shuffle=True, drop_last=True)
    if len(sampler) == 0:
        raise ValueError(f"{len(dataset)} usable training images cannot fill one batch of "
                         f"{cfg.train_cfg.batch_size} per process; lower "
                         "train_cfg.batch_size")
    workers = cfg.train_cfg.num_workers if num_workers is None else num_workers
    collate = TargetCollator(cfg.num_grids, cfg.scale_ranges, cfg.sigma)
    # Persistent workers: a small dataset would otherwise restart them every epoch.
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                  num_workers=workers, return_list=True,
                                  persistent_workers=workers > 0)
    return loader, sampler


def build_training(cfg, world_size=1, log=print):
    """(model, optimizer, ema or None, base LR) for ``cfg``, initial weights loaded."""
    from .convert import load_initial_weights

    train = cfg.train_cfg
    model = build_model(cfg)
    model.criterion = SOLOv2Loss(cfg.num_classes)
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


def build_evaluation(cfg):
    """(validation CocoSet, post-processor) for periodic mask AP."""
    coco = CocoSet(cfg.val_path, cfg.val_pre_path)
    coco.check_classes(cfg.num_classes)
    return coco, build_postprocess(cfg)


def distributed_info():
    """(rank, world size), initialising the process group when launched on several
    devices by ``python -m paddle.distributed.launch``."""
    world = dist.get_world_size()
    if world > 1:
        dist.init_parallel_env()
    return dist.get_rank(), world
