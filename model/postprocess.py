"""SOLOv2 inference post-processing: from grid scores and dynamic kernels to image masks.

Follows SOLOv2Head.get_seg_single of the reference (WXinlong/SOLO, mmdet/models/anchor_heads/
solov2_head.py), which PaddleDetection reproduces step for step:

1. category scores above ``score_thr`` pick (cell, class) candidates;
2. each candidate's kernel is applied to the mask feature as a 1x1 conv, then sigmoid;
3. masks are binarised at ``mask_thr``; a mask must cover more pixels than its level's
   stride (``sum > stride``);
4. "maskness" re-scoring: score *= mean probability inside the binary mask;
5. the best ``nms_pre`` go through Matrix NMS; survivors need ``update_thr``;
6. the best ``max_per_img`` are upsampled 4x to the padded input, cropped to the resized
   image, resized to the original image (both bilinear, half-pixel centres) and binarised.

Everything after the network runs here in numpy and OpenCV, on the network's outputs for
one image: on CPU, Paddle's eager kernels for these small steps are several times slower
(``tools/benchmark.py`` times post-processing and Matrix NMS on their own; "Speed" in the
README compares the two). The exported inference graph needs the same steps as tensor ops:
:mod:`model.postprocess_graph` (tests check that the two agree).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import cv2
import numpy as np
import paddle.nn.functional as F

from tools.errors import ConfigError
from tools.runtime import cpu_cores

# Step 2-4 batch size after the first nms_pre candidates (see scored_candidates).
SCORING_BATCH = 128
# Rows of a scoring batch that rescore's element-wise steps take at a time: 16 masks of a
# 128 x 216 mask feature are 1.8 MB of float32, which stay in the cache from the sigmoid to
# the row sums instead of going through memory once per step.
CHUNK_ROWS = 16
# Fewest mask probabilities in a batch for rescore to share the work among threads.
THREADED_SIZE = 1 << 20


def points_nms(heat):
    """Keep a score only where it is the maximum of its 2x2 neighbourhood (up and left).

    heat: [N, C, S, S] probabilities (Paddle tensor, part of the network's eval output) ->
    same shape, non-maxima set to 0. A 2x2 max-pool with padding 1 and stride 1 gives S+1
    outputs; dropping the last row and column aligns output (i, j) with the window over
    cells (i-1..i, j-1..j) [SOLO points_nms].
    """
    hmax = F.max_pool2d(heat, 2, stride=1, padding=1)
    keep = (hmax[:, :, :-1, :-1] == heat).astype(heat.dtype)
    return heat * keep


def get_seg_single(cate_scores, kernels, mask_feat, cell_strides, crop_hw, ori_hw, cfg,
                   threads=1):
    """Masks for one image.

    Args:
        cate_scores: [L, C] float32 category probabilities after points NMS, L = sum(S^2)
            cells in level order, each level's cells row-major.
        kernels: [L, E] float32 dynamic kernels, same cell order.
        mask_feat: [E, h, w] float32 unified mask feature at stride 4 of the padded input.
        cell_strides: [L] float32 stride of each cell's level (:func:`cell_strides`).
        crop_hw: (height, width) of the resized image inside the padded input.
        ori_hw: (height, width) of the original image.
        cfg: test settings (score_thr, mask_thr, nms_pre, nms_kernel, nms_sigma,
            update_thr, max_per_img).
        threads: threads for the element-wise steps of re-scoring (the same results with
            any number).
        All arrays are numpy.

    Returns:
        dict of masks [k, H, W] bool, labels [k] int64, scores [k] float32 and boxes
        [k, 4] float32 (x0, y0, x1, y1, exclusive ends), best first; k may be 0.
    """
    with one_blas_thread():
        probs, masks, labels, scores = scored_candidates(cate_scores, kernels, mask_feat,
                                                         cell_strides, cfg, threads)
        scores = matrix_nms(masks, labels, scores, cfg.nms_kernel, cfg.nms_sigma)
    keep = kept_after_nms(scores, cfg)
    probs = probs.take(keep).reshape(len(keep), *mask_feat.shape[1:])
    masks, boxes = _paste(probs, crop_hw, ori_hw, cfg.mask_thr)
    return {"masks": masks, "labels": labels[keep].astype(np.int64),
            "scores": scores[keep].astype(np.float32), "boxes": boxes}


def kept_after_nms(scores, cfg):
    """Step 5's cut: indices of the decayed ``scores`` that reach ``update_thr``, the best
    ``max_per_img`` of them, best first."""
    keep = np.flatnonzero(scores >= cfg.update_thr)
    return keep[_best_first(scores[keep])[:cfg.max_per_img]]


def scored_candidates(cate_scores, kernels, mask_feat, cell_strides, cfg, threads=1):
    """Steps 1-4 and the cut to ``nms_pre`` (arguments as in :func:`get_seg_single`) for
    the ``n <= nms_pre`` best candidates whose masks are larger than their stride, best
    first: (probs, masks, labels, scores) with probs and masks :class:`RowBlocks` of their
    mask probabilities [n, h*w] float32 and masks [n, h*w] bool (probs > mask_thr), labels
    [n] and re-scored scores [n].

    The reference computes a mask for every candidate; with an untrained or synthetic
    model that can be over 10,000 per image. But re-scoring never raises a score
    (maskness <= 1), so once ``nms_pre`` masks have re-scored scores of at least ``bar``,
    no candidate scored below ``bar`` can enter the best ``nms_pre``. Candidates are
    therefore scored best first, in batches, until the next one is below the bar: the
    same selection as scoring all of them.

    The batches are exactly those of the previous, plain implementation, so the masks and
    scores are its bits. Computing a cell's mask once for all its classes would save about
    15% with the fixture weights, but OpenBLAS gives a row of a product different last
    bits depending on the other rows beside it for some sizes (40 channels by 100 or 500
    pixels, for one), and numpy multiplies a single row by a matrix-vector product of its
    own rounding: the batches decide the bits.
    """
    cells, labels = np.nonzero(cate_scores > cfg.score_thr)
    scores = cate_scores[cells, labels]
    order = _best_first(scores)
    cells, labels, scores = cells[order], labels[order], scores[order]
    flat_feat = mask_feat.reshape(len(mask_feat), -1)

    probs, masks, rescored = [], [], []
    done, bar = 0, -np.inf
    while done < len(scores) and scores[done] >= bar:
        # scores is descending, so the candidates at or above the bar come first.
        reachable = np.searchsorted(-scores, -bar, side="right")
        end = min(done + (cfg.nms_pre if done == 0 else SCORING_BATCH), reachable)
        batch = rescore(kernels[cells[done:end]], flat_feat, scores[done:end],
                        cell_strides[cells[done:end]], cfg.mask_thr, threads)
        probs.append(batch[0])
        masks.append(batch[1])
        rescored.append(batch[2])
        done = end
        bar = _nth_largest(np.concatenate(rescored), cfg.nms_pre)

    rescored = np.concatenate(rescored) if rescored else np.zeros(0, np.float32)
    valid = np.flatnonzero(rescored > -np.inf)
    best = valid[_best_first(rescored[valid])[:cfg.nms_pre]]
    width = flat_feat.shape[1]
    return (RowBlocks(probs, best, width, np.float32),
            RowBlocks(masks, best, width, bool), labels[best],
            rescored[best])


def rescore(kernels, flat_feat, scores, strides, mask_thr, threads=1):
    """Steps 2-4 for m candidates: kernels [m, E] on the mask feature [E, P] -> mask
    probabilities [m, P] float32, masks [m, P] bool (probabilities > mask_thr) and
    re-scored scores [m] (-inf where the mask is not larger than its level's stride).

    The same numbers as the plain form ``p = sigmoid(k @ f); m = p > mask_thr;
    score * sum(p * m) / sum(m)``, bit for bit, computed faster: one float32 BLAS product
    of the negated kernels (negation is exact, so that is -(k @ f) bit for bit, where the
    sigmoid 1 / (1 + exp(-x)) starts), then every element-wise step and both row sums on
    :data:`CHUNK_ROWS` rows at a time while they are in the cache, in ``threads`` threads
    (each row's steps and sums are the same whichever chunk or thread does them).
    """
    probs = np.negative(kernels) @ flat_feat
    masks = np.empty(probs.shape, bool)
    areas = np.empty(len(probs), np.int64)
    sums = np.empty(len(probs), np.float32)

    def chunk(rows):
        p = probs[rows]
        # exp overflows to inf for very negative logits: sigmoid 0, as intended.
        with np.errstate(over="ignore"):
            np.exp(p, out=p)
        p += 1
        np.reciprocal(p, out=p)
        m = masks[rows]
        np.greater(p, mask_thr, out=m)
        ones = m.astype(np.float32)
        # Sums of 0/1 in float32 are exact pixel counts (up to 2^24 pixels).
        areas[rows] = ones.sum(axis=1)
        # p * 1 or p * 0: the array the reference sums, and numpy's float32 row sum.
        np.multiply(ones, p, out=ones)
        sums[rows] = ones.sum(axis=1)

    # Threads cost more to start than a small batch takes (the last batches, small inputs).
    _in_threads(chunk, [slice(start, start + CHUNK_ROWS)
                        for start in range(0, len(probs), CHUNK_ROWS)],
                threads if probs.size >= THREADED_SIZE else 1)
    maskness = sums / np.maximum(areas, 1).astype(np.float32)
    rescored = np.where(areas > strides, scores * maskness, -np.inf).astype(np.float32)
    return probs, masks, rescored


class RowBlocks:
    """Rows ``index`` of several [m_i, width] blocks stacked, without stacking them: the
    scoring batches' mask probabilities stay where they were computed, and only the rows
    asked for are copied (:meth:`take`)."""

    def __init__(self, blocks, index, width, dtype):
        self.blocks, self.index, self.width, self.dtype = blocks, index, width, dtype
        self.starts = np.cumsum([0] + [len(block) for block in blocks])

    def __len__(self):
        return len(self.index)

    def take(self, picks):
        """[k, width] array of rows ``index[picks]``."""
        rows = self.index[picks]
        out = np.empty((len(rows), self.width), self.dtype)
        for block, start, stop in zip(self.blocks, self.starts[:-1], self.starts[1:]):
            here = (rows >= start) & (rows < stop)
            out[here] = block[rows[here] - start]
        return out


def matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0):
    """Matrix NMS (SOLOv2 paper, Sec. 4.2, Eq. 3-4): decay every score at once.

    Args:
        masks: [n, h, w] or [n, P] binary masks (bool or 0/1), sorted by descending score,
            or a :class:`RowBlocks` of [n, P] masks (only each class's rows are copied).
        labels: [n] class of each mask.
        scores: [n] scores, descending.
        kernel: 'gaussian' (decay exp(-sigma * iou^2)) or 'linear' (decay 1 - iou).

    Returns:
        [n] float32 decayed scores. For mask j, the decay is the minimum over higher-scored
        masks i of the same class of f(iou_ij) / f(max iou of i with any higher-scored
        mask of its class), which approximates how far i itself was suppressed.

    Only IoUs within a class enter, so each class is decayed on its own: the same numbers
    as one n x n product over all classes, for a fraction of its cost.
    """
    check_nms_kernel(kernel)
    if isinstance(masks, RowBlocks):
        rows_of = masks.take
    else:
        rows_of = masks.reshape(len(masks), np.prod(masks.shape[1:], dtype=int)).__getitem__
    decay = np.ones(len(masks), np.float32)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) == 1:
            continue  # alone in its class: decay 1 (exactly what the formula gives)
        # Intersections are pixel counts, exact in float32 up to 2^24 (far above any mask
        # feature size) whichever way they are summed; so where most pixels are inside
        # every mask of the class or outside all of them (large masks overlap, small ones
        # leave the image empty; 90% with the fixture weights) those are counted once, and
        # only the others go into the product of the 0/1 masks (one BLAS call, A @ A.T).
        # Its diagonal holds the areas.
        group = rows_of(members).astype(bool, copy=False)
        everywhere = group.all(axis=0)
        varying = group.any(axis=0) & ~everywhere
        if np.count_nonzero(varying) < len(varying) // 2:
            group = np.compress(varying, group, axis=1)
            constant = np.float32(np.count_nonzero(everywhere))
        else:
            constant = np.float32(0)
        group = group.astype(np.float32)
        inter = group @ group.T + constant
        areas = np.diagonal(inter)
        union = areas[:, None] + areas[None, :] - inter
        # iou[i, j] for i scored above j; zero elsewhere.
        iou = np.triu(inter / union, k=1)
        # The most mask i overlaps any mask scored above it (0 for the best of its class).
        compensate = iou.max(axis=0)[:, None]
        if kernel == "gaussian":
            ratio = np.exp(-sigma * iou ** 2) / np.exp(-sigma * compensate ** 2)
        else:
            ratio = (1 - iou) / (1 - compensate)
        # Column j's minimum. Rows i >= j hold f(0) / f(c_i) >= 1, and row 0 (c = 0)
        # holds f(iou_0j) <= 1, so only masks scored above j decide, and the best of the
        # class keeps 1. Masks of other classes would add rows of 1 / f(c_i) >= 1 only.
        decay[members] = ratio.min(axis=0)
    return (scores * decay).astype(np.float32)


def check_nms_kernel(kernel):
    """Both forms of Matrix NMS know two decay kernels; anything else is a config error."""
    if kernel not in ("gaussian", "linear"):
        raise ConfigError(f"test_cfg.nms_kernel must be 'gaussian' or 'linear', got {kernel!r}")


def paste_masks(probs, crop_hw, ori_hw, mask_thr):
    """[k, h, w] mask probabilities at stride 4 -> [k, H, W] bool at the original size:
    upsampled 4x to the padded input, cropped to the resized image, resized to the original
    (both bilinear, half-pixel centres), then binarised [SOLO get_seg_single].

    OpenCV's INTER_LINEAR is that resize (PyTorch align_corners=False); on float32 it stays
    within 2e-7 of the exact half-pixel formula (tests/model/test_postprocess.py).
    """
    return _paste(probs, crop_hw, ori_hw, mask_thr)[0]


def _paste(probs, crop_hw, ori_hw, mask_thr):
    """:func:`paste_masks` and the boxes of the pasted masks (:func:`masks_to_boxes`),
    each mask boxed while it is still in the cache. One thread: OpenCV's resize has its
    own, and more of ours made it slower (15 against 12 ms for 60 masks at 300 x 451)."""
    (crop_h, crop_w), (ori_h, ori_w) = crop_hw, ori_hw
    masks = np.empty((len(probs), ori_h, ori_w), bool)
    boxes = np.zeros((len(probs), 4), np.float32)
    # One float32 image at the original size, reused by every mask: memory stays at one
    # image plus the binary masks, and an 8000 x 6000 photo is not given 192 MB of fresh
    # pages per mask, which took longer than the resize itself.
    buffer = np.empty((ori_h, ori_w), probs.dtype) if len(probs) else None
    for mask, box, prob in zip(masks, boxes, probs):
        h, w = prob.shape
        up = cv2.resize(prob, (4 * w, 4 * h), interpolation=cv2.INTER_LINEAR)
        # (cv2 copies when the sizes are equal, so the crop is used as it is then; it
        # writes into ``buffer`` when size and type fit, else returns a new array.)
        resized = up[:crop_h, :crop_w] if (crop_h, crop_w) == (ori_h, ori_w) else \
            cv2.resize(up[:crop_h, :crop_w], (ori_w, ori_h), dst=buffer,
                       interpolation=cv2.INTER_LINEAR)
        np.greater(resized, mask_thr, out=mask)
        box[:] = _mask_box(mask)
    return masks, boxes


def masks_to_boxes(masks):
    """[k, H, W] bool -> [k, 4] float32 boxes (x0, y0, x1, y1) with exclusive ends, i.e.
    pixel-edge coordinates; an empty mask gets an all-zero box."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        boxes[i] = _mask_box(mask)
    return boxes


def _mask_box(mask):
    """(x0, y0, x1, y1) of one [H, W] bool mask, exclusive ends; zeros when empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return 0, 0, 0, 0
    rows = np.flatnonzero(mask.any(axis=1))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def _in_threads(work, items, threads):
    """work(item) for every item, in up to ``threads`` threads (numpy and OpenCV release
    the GIL in their loops); the first exception is raised here."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        for done in [pool.submit(work, item) for item in items]:
            done.result()


@contextmanager
def one_blas_thread():
    """Context in which numpy's BLAS runs on the calling thread alone (same bits).

    With its default of every core, OpenBLAS's threads wait for each other by spinning, and
    on a 2-core machine that is busy with anything else (the engine's own threads winding
    down, the loop's drawing threads, another process) the post-processing took 2-4x longer
    than with one BLAS thread (README, Speed). Products here are therefore single-threaded
    and the element-wise work is shared among threads instead. Threads inside the context
    at the same time share one limit, lifted when the last one leaves.
    """
    global _blas, _blas_users, _blas_limit
    with _blas_lock:
        if _blas is None:  # finds the BLAS libraries loaded by then, numpy's among them
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController()
        if _blas_users == 0:
            _blas_limit = _blas.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()


_blas_lock = threading.Lock()
_blas, _blas_users, _blas_limit = None, 0, None


def cell_strides(num_grids, strides):
    """[L] float32: the stride of the level each grid cell belongs to."""
    return np.concatenate([np.full(g * g, s, np.float32) for g, s in zip(num_grids, strides)])


def _best_first(scores):
    """Indices that sort ``scores`` descending; ties keep their order."""
    return np.argsort(-scores, kind="stable")


def _nth_largest(values, n):
    """The n-th largest of ``values``, or -inf when there are fewer than n."""
    if len(values) < n:
        return -np.inf
    return np.partition(values, len(values) - n)[len(values) - n]


class PostProcess:
    """Turns SOLOv2 eval outputs into per-image masks, labels, scores and boxes.

    __call__(outputs, crop_hws, ori_hws) -> list of dicts (see get_seg_single), one per
    image; outputs are the network's (tensors or numpy arrays), crop_hws / ori_hws give
    each image's resized and original (height, width). ``threads`` (default: every core
    this process may use) only changes the speed.
    """

    def __init__(self, test_cfg, num_grids, strides, threads=None):
        self.cfg = test_cfg
        self.cell_strides = cell_strides(num_grids, strides)
        self.threads = threads or cpu_cores()

    def __call__(self, outputs, crop_hws, ori_hws):
        arrays = [np.asarray(outputs[key]) for key in ("cate_scores", "kernels", "mask_feat")]
        return [get_seg_single(*(a[i] for a in arrays), self.cell_strides, crop_hw, ori_hw,
                               self.cfg, self.threads)
                for i, (crop_hw, ori_hw) in enumerate(zip(crop_hws, ori_hws))]


def build_postprocess(cfg):
    return PostProcess(cfg.test_cfg, cfg.num_grids, cfg.strides)
