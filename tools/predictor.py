"""The one prediction loop behind demo.py, eval.py and test_dev.py.

Three stages overlap: worker threads read and preprocess images ahead of the model; the
calling thread batches them, runs the network and the post-processing; worker threads
consume results (draw and save, or encode for COCO). Images in one batch always share a
padded shape, because SOLOv2's grid resize, CoordConv and GroupNorm all see the padding:
so a batch of N gives the same masks as N single images.
"""

import collections
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import paddle

from .preprocess import ImageReadError, pad_batch, padded_shape, preprocess, read_image


class StageTimes:
    """Thread-safe accumulator of seconds and counts per named stage."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds = collections.defaultdict(float)
        self.counts = collections.defaultdict(int)

    def add(self, stage, seconds, count=1):
        with self._lock:
            self.seconds[stage] += seconds
            self.counts[stage] += count

    def rows(self):
        """(stage, ms per image) in the order stages were first seen."""
        return [(stage, 1000.0 * self.seconds[stage] / max(self.counts[stage], 1))
                for stage in self.seconds]

    def report(self, wall, count):
        """Lines giving ms per image of every stage and of the wall clock over ``count``
        images."""
        lines = ["per-stage time, ms per image (stages overlap in threads):"]
        lines += [f"  {stage:<12} {ms:8.1f}" for stage, ms in self.rows()]
        lines.append(f"  {'wall':<12} {1000 * wall / max(count, 1):8.1f}")
        return "\n".join(lines)


def progress_bar(total, desc):
    """A tqdm bar with an ETA on stderr, for predict_stream's ``progress`` callback. Write
    messages while it runs with ``bar.write(text, file=sys.stderr)`` to keep it intact."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True)


@dataclass
class Item:
    index: int
    path: str
    input: np.ndarray = None   # [3, h, w] float32, unpadded
    crop_hw: tuple = None      # resized image size inside the padded input
    ori_hw: tuple = None       # original image size
    image: np.ndarray = None   # original RGB, kept only when asked for
    error: str = None


def load_item(index, path, size, mean, std, style, keep_image=False, times=None):
    start = time.perf_counter()
    try:
        image = read_image(path)
    except ImageReadError as err:
        return Item(index, path, error=str(err))
    read_done = time.perf_counter()
    chw, crop_hw, ori_hw = preprocess(image, size, mean, std, style)
    if times is not None:
        times.add("read", read_done - start)
        times.add("preprocess", time.perf_counter() - read_done)
    return Item(index, path, chw, crop_hw, ori_hw, image if keep_image else None)


class DygraphPredictor:
    """The dynamic-graph network plus post-processing, behind the interface every engine
    offers: ``predictor(batch, crop_hws, ori_hws, times) -> list of result dicts``, with
    ``batch`` the padded [N, 3, H, W] float32 numpy input."""

    def __init__(self, model, postprocess):
        self.model = model
        self.postprocess = postprocess
        model.eval()

    def __call__(self, batch, crop_hws, ori_hws, times):
        start = time.perf_counter()
        with paddle.no_grad():
            outputs = self.model(paddle.to_tensor(batch))
            forward_done = time.perf_counter()
            results = self.postprocess(outputs, crop_hws, ori_hws)
        times.add("forward", forward_done - start, len(batch))
        times.add("postprocess", time.perf_counter() - forward_done, len(batch))
        return results


def predict_stream(predictor, paths, size, mean, std, style, batch_size=1, num_workers=2,
                   keep_image=False, consumer=None, times=None, on_error=None, progress=None):
    """Predict every image in ``paths`` with ``predictor`` (e.g. a DygraphPredictor).

    consumer(item, result) runs in a worker thread for each image (result: the dict of
    masks/labels/scores/boxes from the post-processing); its return values come back as a
    list in input order (None for unreadable images). Unreadable images are passed to
    ``on_error(item)`` (default: a line on stderr) and skipped. ``progress(n)`` is called
    from the calling thread after each batch with the number of images it held.
    """
    times = times if times is not None else StageTimes()
    on_error = on_error or (lambda item: print(f"skipped: {item.error}", file=sys.stderr))
    results = [None] * len(paths)
    queue = collections.deque()
    pending = collections.OrderedDict()  # padded shape -> items waiting for a full batch
    max_pending = 4 * batch_size
    with ThreadPoolExecutor(num_workers) as readers, ThreadPoolExecutor(num_workers) as writers:
        jobs = iter(enumerate(paths))
        writes = []

        def submit_reads(limit):
            for index, path in jobs:
                queue.append(readers.submit(load_item, index, path, size, mean, std, style,
                                            keep_image, times))
                if len(queue) >= limit:
                    break

        def consume(item, result):
            start = time.perf_counter()
            value = consumer(item, result) if consumer else result
            times.add("consume", time.perf_counter() - start)
            return item.index, value

        def run(items):
            batch_results = predictor(pad_batch([it.input for it in items]),
                                      [it.crop_hw for it in items], [it.ori_hw for it in items],
                                      times)
            for item, result in zip(items, batch_results):
                writes.append(writers.submit(consume, item, result))
            if progress:
                progress(len(items))

        submit_reads(max(2 * num_workers, 2 * batch_size))
        while queue:
            item = queue.popleft().result()
            submit_reads(max(2 * num_workers, 2 * batch_size))
            if item.error:
                on_error(item)
                if progress:
                    progress(1)
                continue
            shape = padded_shape(*item.input.shape[1:])
            bucket = pending.setdefault(shape, [])
            bucket.append(item)
            if len(bucket) == batch_size:
                run(pending.pop(shape))
            elif sum(len(b) for b in pending.values()) > max_pending:
                run(pending.pop(next(iter(pending))))  # oldest shape, partially filled
        for bucket in pending.values():
            run(bucket)
        for future in writes:
            index, value = future.result()
            results[index] = value
    return results


def resolve_preprocess(cfg, meta):
    """The preprocessing style for these weights: the config's explicit choice, else what
    the weight file records, else the config's native style."""
    if cfg.preprocess != "auto":
        return cfg.preprocess
    return meta.get("preprocess", cfg.native_preprocess)


def load_class_names(cfg):
    """Class names from ``cfg.classes_path``, one per line; must match num_classes."""
    path = cfg.classes_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"classes_path {path!r} does not exist; write one class name "
                                "per line, in label order")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != cfg.num_classes:
        raise ValueError(f"{path} lists {len(names)} classes but num_classes="
                         f"{cfg.num_classes}; make them agree")
    return names


def use_all_cpu_cores(processes=1):
    """Let Paddle's CPU kernels use every core this process may run on (split evenly when
    ``processes`` processes share the machine).

    Paddle 3.3's dynamic graph runs its CPU math on one thread by default
    (FLAGS_paddle_num_threads=1; changing the flag after start-up has no effect). On a
    2-core machine two threads make the config 2 forward pass 1.6x faster, and the
    post-processing matmuls 2x. Returns the thread count set.
    """
    from paddle.base import core

    count = max(cpu_cores() // max(processes, 1), 1)
    core.set_num_threads(count)
    return count


def cpu_cores():
    """Cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(int(cores or 1), 1)


def load_predictor(cfg, model_path, config_number=None):
    """(DygraphPredictor, preprocessing style) for a weight file.

    Raises tools.convert.MissingWeightsError (with download/convert instructions) when the
    file does not exist, WeightFileError / ConversionError when it does not fit the config.
    """
    from model import build_model, build_postprocess

    from .convert import load_weights

    use_all_cpu_cores()
    model = build_model(cfg)
    meta = load_weights(model, model_path, cfg, config_number)
    return DygraphPredictor(model, build_postprocess(cfg)), resolve_preprocess(cfg, meta)
