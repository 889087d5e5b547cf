"""The training loop: iterations, logging, checkpoints, periodic evaluation.

One process per device. Every process trains; only rank 0 logs, saves and evaluates.
"""

import collections
import contextlib
import datetime
import math
import os
import sys
import time

import numpy as np
import paddle

from ..files import OutputError, describe_os_error
from ..weights.files import save_pdparams
from .checkpoints import checkpoint_dir, checkpoint_path, remove_interrupted_writes, save_checkpoint
from .metrics import MetricsFile, VisualDLScalars, metrics_path
from .optim import lr_at, set_train_mode


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stops without saving (the trainer has
    logged where and what to do)."""


class TrainLog:
    """Prints to the console and appends the same lines to OUTPUT/train.log; scalars go to
    OUTPUT/metrics.jsonl and, with ``vdl``, to VisualDL (tools/training/metrics.py). Silent
    on ranks other than 0. A full disk or an unwritable folder is an OutputError naming
    the file."""

    def __init__(self, output_dir, enabled=True, vdl=False):
        self.enabled = enabled
        self.file = self.metrics = self.vdl = None
        if not enabled:
            return
        self.path = os.path.join(output_dir, "train.log")
        try:
            os.makedirs(output_dir, exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise OutputError(describe_os_error(err, self.path)) from None
        self.metrics = MetricsFile(metrics_path(output_dir))
        self.vdl = VisualDLScalars(output_dir) if vdl else None

    def __call__(self, message, file=None):
        if not self.enabled:
            return
        print(message, file=file or sys.stdout, flush=True)
        try:
            self.file.write(message + "\n")
            self.file.flush()
        except OSError as err:
            raise OutputError(describe_os_error(err, self.path)) from None

    def run_started(self, iteration):
        """Mark in metrics.jsonl that a run starts (or resumes) at ``iteration``."""
        if self.enabled:
            self.metrics.start(iteration)

    def scalars(self, step, values):
        if not self.enabled:
            return
        self.metrics.add(step, values)
        if self.vdl is not None:
            self.vdl.add(step, values)

    def close(self):
        if self.file:
            # Lines are flushed as they are written; what a full disk refused was reported.
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        for sink in (self.metrics, self.vdl):
            if sink is not None:
                sink.close()
        self.metrics = self.vdl = None


class Window:
    """Running mean over the last ``size`` values."""

    def __init__(self, size=20):
        self.values = collections.deque(maxlen=size)

    def add(self, value):
        self.values.append(value)

    @property
    def mean(self):
        return sum(self.values) / max(len(self.values), 1)


def batches(loader, sampler, epoch):
    """Endless stream of batches, reshuffling every epoch."""
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            yield batch
        epoch += 1


def split_batch(batch):
    """Loader output -> (images, targets): the network's input and the loss's targets."""
    targets = {k: batch[k] for k in ("cate_labels", "ins_index", "ins_masks", "num_pos")}
    return batch["images"], targets


@contextlib.contextmanager
def ema_weights(model, ema):
    """Temporarily put the EMA weights into ``model`` (no-op without EMA)."""
    if ema is None:
        yield
        return
    saved = {k: v.numpy() for k, v in model.state_dict().items()}
    model.set_state_dict(ema.arrays())
    try:
        yield
    finally:
        model.set_state_dict(saved)


def save_model(path, model, ema, meta):
    """Inference weights (EMA when enabled) in the layout demo.py and eval.py load."""
    with ema_weights(model, ema):
        arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    save_pdparams(arrays, path, meta)


def format_eta(seconds):
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class Trainer:
    """Args:
        cfg: the config; model: the bare SOLOv2; net: the training forward pass,
        ``net(images) -> raw head outputs`` (tools.training.build.HeadOutputs, or its
        paddle.DataParallel wrapper); criterion: ``criterion(*outputs, targets) -> dict``
        of losses with 'loss' the total (model/loss.py);
        optimizer, ema, base_lr: from tools.training.build.build_training;
        output_dir: where train.log, checkpoints/ and the model files go;
        rank, world_size: paddle.distributed position; amp: mixed precision (GPU);
        evaluate: ``evaluate() -> dict with 'AP'`` for rank 0, or None;
        meta: dict recorded in saved model files (tools.weights.describe.description);
        log: the run's TrainLog (train.py opens it before building the run, so that
        train.log starts with the run's description), or None to open one here.
    """

    def __init__(self, cfg, model, net, criterion, optimizer, ema, base_lr, output_dir, rank=0,
                 world_size=1, amp=False, evaluate=None, meta=None, log=None):
        self.cfg, self.train_cfg = cfg, cfg.train_cfg
        self.model, self.net, self.criterion = model, net, criterion
        self.optimizer, self.ema = optimizer, ema
        self.base_lr = base_lr
        self.output_dir = output_dir
        self.rank, self.world_size = rank, world_size
        self.main = rank == 0
        self.log = log if log is not None else TrainLog(output_dir, enabled=self.main)
        self.evaluate = evaluate if self.main else None
        self.meta = dict(meta or {})
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if amp else None
        self.best_ap = -math.inf  # the first evaluation always gives a best model
        self.last_checkpoint = None  # the newest complete checkpoint of this run
        self.resumed_from = None     # never pruned while this run lasts

    def step(self, images, targets, lr):
        """One optimisation step; returns the losses as floats."""
        self.optimizer.set_lr(lr)
        with paddle.amp.auto_cast(enable=self.scaler is not None):
            losses = self.criterion(*self.net(images), targets)
        values = {k: float(v) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise NonFiniteLoss(", ".join(f"{k}={v}" for k, v in values.items()))
        if self.scaler is not None:
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses["loss"].backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        if self.ema is not None:
            self.ema.update(self.model)
        return values

    def save(self, iteration):
        if not self.main:
            return
        try:
            self.last_checkpoint = save_checkpoint(
                checkpoint_dir(self.output_dir), iteration, self.model, self.optimizer,
                self.ema, keep=self.train_cfg.keep_checkpoints,
                meta=dict(self.meta, base_lr=self.base_lr, best_ap=self.best_ap),
                protect=[self.resumed_from] if self.resumed_from else [])
        except OutputError as err:
            kept = self.last_checkpoint or "none was written yet"
            raise OutputError(f"{err}; last complete checkpoint: {kept}") from None
        self.log(f"checkpoint: {self.last_checkpoint}")

    def run_evaluation(self, iteration):
        with ema_weights(self.model, self.ema):
            start = time.perf_counter()
            stats = self.evaluate()
        self.log(f"eval at iter {iteration}: mask AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}"
                 f"  AP75 {stats['AP75']:.4f}  ({stats['detections']} detections on "
                 f"{stats['images']} images, {time.perf_counter() - start:.1f} s)")
        self.log.scalars(iteration, {f"eval/{k}": stats[k] for k in ("AP", "AP50", "AP75")})
        if stats["AP"] > self.best_ap:
            self.best_ap = stats["AP"]
            path = os.path.join(self.output_dir, "best_model.pdparams")
            save_model(path, self.model, self.ema, dict(self.meta, iteration=iteration,
                                                         mask_ap=stats["AP"]))
            self.log(f"best mask AP so far: saved {path}")
        set_train_mode(self.model, self.cfg.backbone_frozen_stages, self.cfg.backbone_norm)

    def check_replicas(self):
        """Log whether every process ended with the same weights (DataParallel averages
        gradients, so they must)."""
        import paddle.distributed as dist

        checksum = paddle.to_tensor([float(sum(p.astype("float64").sum()
                                               for p in self.model.parameters()))])
        gathered = []
        dist.all_gather(gathered, checksum)
        values = [float(g.numpy().ravel()[0]) for g in gathered]
        same = all(abs(v - values[0]) <= 1e-6 * max(abs(values[0]), 1.0) for v in values)
        self.log(f"weights identical on all {self.world_size} processes: "
                 f"{'yes' if same else 'NO'} (checksums {values})")

    def train(self, loader, sampler, start_iter=0, best_ap=-math.inf):
        """Train from ``start_iter`` to train_cfg.max_iters; ``best_ap`` is the best mask AP
        of the run so far (when resuming). Returns the final model path."""
        self.best_ap = best_ap
        try:
            if self.main:
                self.start_outputs(start_iter)
            return self._train(loader, sampler, start_iter)
        finally:
            self.log.close()

    def start_outputs(self, start_iter):
        """Clear what a killed run left half-written, and note the checkpoint this run
        resumed from (it has just loaded; pruning keeps it). Runs on rank 0 after every
        process has built its run (paddle.DataParallel synchronises them), so that no
        other process is still writing a temporary here."""
        remove_interrupted_writes(self.output_dir, self.log)
        self.log.run_started(start_iter)
        resumed = checkpoint_path(checkpoint_dir(self.output_dir), start_iter)
        if start_iter > 0 and os.path.exists(resumed):
            self.resumed_from = self.last_checkpoint = resumed

    def _train(self, loader, sampler, start_iter):
        train = self.train_cfg
        images_per_iter = train.batch_size * self.world_size
        epoch = start_iter // max(len(loader), 1)
        stream = batches(loader, sampler, epoch)
        set_train_mode(self.model, self.cfg.backbone_frozen_stages, self.cfg.backbone_norm)
        windows = collections.defaultdict(Window)
        self.log(f"training iterations {start_iter}..{train.max_iters} at total batch "
                 f"{images_per_iter} ({len(loader)} iterations per epoch per process)")
        tick = time.perf_counter()
        for it in range(start_iter, train.max_iters):
            images, targets = split_batch(next(stream))
            data_done = time.perf_counter()
            lr = lr_at(it, self.base_lr, train)
            try:
                values = self.step(images, targets, lr)
            except NonFiniteLoss as err:
                kept = self.last_checkpoint or "none was written in this run"
                self.log(f"error: non-finite loss at iteration {it + 1} ({err}); training "
                         f"stopped. Last good checkpoint: {kept}. Lower the LR "
                         "(train_cfg.base_lr) or check the annotations.", file=sys.stderr)
                raise
            done = time.perf_counter()
            for k, v in values.items():
                windows[k].add(v)
            windows["data"].add(data_done - tick)
            windows["iter"].add(done - tick)
            tick = done
            finished = it + 1
            if self.main and (finished % train.log_iter == 0 or finished == train.max_iters
                              or finished == start_iter + 1):
                speed = images_per_iter / max(windows["iter"].mean, 1e-9)
                eta = windows["iter"].mean * (train.max_iters - finished)
                self.log(f"iter {finished}/{train.max_iters}  loss {windows['loss'].mean:.4f} "
                         f"(ins {windows['loss_ins'].mean:.4f}, cate "
                         f"{windows['loss_cate'].mean:.4f})  lr {lr:.6g}  {speed:.2f} img/s  "
                         f"data {windows['data'].mean:.3f} s  eta {format_eta(eta)}")
                scalars = {"train/" + k: windows[k].mean for k in ("loss", "loss_ins", "loss_cate")}
                scalars.update({"train/lr": lr, "train/step_time": windows["iter"].mean,
                                "train/data_time": windows["data"].mean})
                self.log.scalars(finished, scalars)
            if finished % train.save_iter == 0 or finished == train.max_iters:
                self.save(finished)
            if (self.evaluate is not None and train.eval_iter
                    and (finished % train.eval_iter == 0 or finished == train.max_iters)):
                self.run_evaluation(finished)
                tick = time.perf_counter()
        if self.world_size > 1:
            self.check_replicas()
        final = os.path.join(self.output_dir, "model_final.pdparams")
        if self.main:
            save_model(final, self.model, self.ema, dict(self.meta, iteration=train.max_iters))
            self.log(f"final weights: {final}")
        return final


def loss_curve(log_path):
    """(iterations, losses) parsed from a train.log, for tests and plots."""
    iters, losses = [], []
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("iter "):
                words = line.split()
                iters.append(int(words[1].split("/")[0]))
                losses.append(float(words[3]))
    return np.array(iters), np.array(losses)
