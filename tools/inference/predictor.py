"""The one prediction loop behind demo.py, eval.py, test_dev.py, training's periodic
evaluation and tools/benchmark.py.

Three stages overlap: worker threads read and preprocess images ahead of the model; the
calling thread batches them, runs the network and the post-processing; worker threads
consume results (draw and save, or encode for COCO). Images in one batch always share a
padded shape, because SOLOv2's grid resize, CoordConv and GroupNorm all see the padding:
so a batch of N gives the same masks as N single images.
"""

import collections
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..data.preprocess import ImageReadError, pad_batch, padded_shape, preprocess, read_image


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


def progress_bar(total, desc, unit="img"):
    """A tqdm bar with an ETA (and the rate: FPS for frames) on stderr, for predict_stream's
    ``progress`` callback; ``total`` None for a stream of unknown length. Write messages
    while it runs with ``bar.write(text, file=sys.stderr)`` to keep it intact."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0,
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


def check_array(image, index):
    """An in-memory image as given to the Python API: RGB uint8 [H, W, 3]."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ImageReadError(f"array {index}: expected an RGB uint8 image [H, W, 3], got "
                             f"{image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(image)


def load_item(index, source, size, mean, std, style, keep_image=False, times=None):
    """Read and preprocess one image; ``source`` is a path or an RGB uint8 [H, W, 3]
    array (then the Item's path is None)."""
    start = time.perf_counter()
    path = None if isinstance(source, np.ndarray) else source
    try:
        image = read_image(path) if path is not None else check_array(source, index)
        read_done = time.perf_counter()
        # An image too elongated to resize is an ImageReadError too (ImageSizeError).
        chw, crop_hw, ori_hw = preprocess(image, size, mean, std, style,
                                          source=path or f"array {index}")
    except ImageReadError as err:
        return Item(index, path, error=str(err))
    if times is not None:
        times.add("read", read_done - start)
        times.add("preprocess", time.perf_counter() - read_done)
    return Item(index, path, chw, crop_hw, ori_hw, image if keep_image else None)


def predict_stream(predictor, sources, size, mean, std, style, batch_size=1, num_workers=2,
                   keep_image=False, consumer=None, times=None, on_error=None, progress=None,
                   ordered=None):
    """Predict every image of ``sources`` with ``predictor``, any backend of
    tools.inference.backends: ``predictor(batch, crop_hws, ori_hws, times) -> results``.

    ``sources`` holds paths or RGB uint8 [H, W, 3] arrays: a list, or any iterable of
    unknown length (the frames of a video, a camera); it is drawn from only as the readers
    need it, a few batches ahead, so a long video never sits in memory.

    consumer(item, result) runs in a worker thread for each image (result: the dict of
    masks/labels/scores/boxes from the post-processing); its return values come back as a
    list in input order (None for unreadable images). Given ``ordered(index, value)``, they
    go to it instead, from the calling thread, in input order, each as soon as every earlier
    image has been consumed or skipped (a video is written frame by frame this way); then
    nothing is kept and None is returned. Unreadable images are passed to
    ``on_error(item)`` (default: a line on stderr) and skipped. ``progress(n)`` is called
    from the calling thread after each batch with the number of images it held. An
    exception in ``consumer`` or ``ordered`` ends the loop at the next image and is raised
    here.
    """
    times = times if times is not None else StageTimes()
    on_error = on_error or (lambda item: print(f"skipped: {item.error}", file=sys.stderr))
    results = None if ordered is not None else []
    reads = collections.deque()   # futures of load_item, in input order
    writes = collections.deque()  # futures of consume, in the order batches ran
    pending = collections.OrderedDict()  # padded shape -> items waiting for a full batch
    max_pending = 4 * batch_size
    # Input order for ``ordered``: values that finished before an earlier image (batches of
    # another padded shape can run first) wait here; skipped images leave a gap to pass.
    ready, gaps, next_index = {}, set(), 0
    with ThreadPoolExecutor(num_workers) as readers, ThreadPoolExecutor(num_workers) as writers:
        jobs = iter(enumerate(sources))

        def submit_reads(limit):
            for index, source in jobs:
                if results is not None:
                    results.append(None)
                reads.append(readers.submit(load_item, index, source, size, mean, std, style,
                                            keep_image, times))
                if len(reads) >= limit:
                    break

        def consume(item, result):
            start = time.perf_counter()
            value = consumer(item, result) if consumer else result
            times.add("consume", time.perf_counter() - start)
            return item.index, value

        def deliver():
            nonlocal next_index
            while next_index in ready or next_index in gaps:
                if next_index in ready:
                    ordered(next_index, ready.pop(next_index))
                else:
                    gaps.discard(next_index)
                next_index += 1

        def finish(future):
            index, value = future.result()  # a consumer's exception is raised here
            if results is not None:
                results[index] = value
            else:
                ready[index] = value
                deliver()

        def collect(keep):
            # Finished consumers are taken off in the order they were submitted, so a
            # failing one (a full disk, say) stops the run when it happens, not after
            # every remaining image has been predicted. With ``keep`` set, also wait until
            # at most that many are unfinished: results wait in memory for a consumer, and
            # those of a large photo are large (100 masks at 8000 x 6000 are 4.6 GB).
            while writes and (writes[0].done() or (keep is not None and len(writes) > keep)):
                finish(writes.popleft())

        def run(items):
            # At most a batch more results than there are consumer threads, enough to keep
            # them busy while the next batch is predicted.
            collect(keep=num_workers + batch_size - 1)
            batch_results = predictor(pad_batch([it.input for it in items]),
                                      [it.crop_hw for it in items], [it.ori_hw for it in items],
                                      times)
            for item, result in zip(items, batch_results):
                writes.append(writers.submit(consume, item, result))
            if progress:
                progress(len(items))

        try:
            submit_reads(max(2 * num_workers, 2 * batch_size))
            while reads:
                item = reads.popleft().result()
                submit_reads(max(2 * num_workers, 2 * batch_size))
                collect(keep=None)
                if item.error:
                    on_error(item)
                    if results is None:
                        gaps.add(item.index)
                        deliver()
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
            collect(keep=0)
        except BaseException:
            for future in list(reads) + list(writes):
                future.cancel()  # queued work only; running tasks finish
            raise
    return results
