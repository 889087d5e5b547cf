"""model/postprocess.py's get_seg_single as it was before it was made faster (commit
e20dc45), kept unchanged as the reference the faster version must equal bit for bit
(tests/model/test_postprocess.py)."""

import cv2
import numpy as np

from model.postprocess import check_nms_kernel

SCORING_BATCH = 128


def get_seg_single(cate_scores, kernels, mask_feat, cell_strides, crop_hw, ori_hw, cfg):
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
        All arrays are numpy.

    Returns:
        dict of masks [k, H, W] bool, labels [k] int64, scores [k] float32 and boxes
        [k, 4] float32 (x0, y0, x1, y1, exclusive ends), best first; k may be 0.
    """
    probs, labels, scores = scored_candidates(cate_scores, kernels, mask_feat, cell_strides,
                                              cfg)
    masks = probs > cfg.mask_thr
    scores = matrix_nms(masks, labels, scores, cfg.nms_kernel, cfg.nms_sigma)
    keep = np.flatnonzero(scores >= cfg.update_thr)
    keep = keep[_best_first(scores[keep])[:cfg.max_per_img]]
    probs = probs[keep].reshape(len(keep), *mask_feat.shape[1:])
    masks = paste_masks(probs, crop_hw, ori_hw, cfg.mask_thr)
    return {"masks": masks, "labels": labels[keep].astype(np.int64),
            "scores": scores[keep].astype(np.float32), "boxes": masks_to_boxes(masks)}


def scored_candidates(cate_scores, kernels, mask_feat, cell_strides, cfg):
    """Steps 1-4 and the cut to ``nms_pre`` (arguments as in :func:`get_seg_single`):
    mask probabilities [n, h*w] float32, labels [n] and re-scored scores [n] of the
    ``n <= nms_pre`` best candidates whose masks are larger than their stride, best first.

    The reference computes a mask for every candidate; with an untrained or synthetic
    model that can be over 10,000 per image. But re-scoring never raises a score
    (maskness <= 1), so once ``nms_pre`` masks have re-scored scores of at least ``bar``,
    no candidate scored below ``bar`` can enter the best ``nms_pre``. Candidates are
    therefore scored best first, in batches, until the next one is below the bar: the
    same selection as scoring all of them.
    """
    cells, labels = np.nonzero(cate_scores > cfg.score_thr)
    scores = cate_scores[cells, labels]
    order = _best_first(scores)
    cells, labels, scores = cells[order], labels[order], scores[order]
    flat_feat = mask_feat.reshape(len(mask_feat), -1)

    probs, rescored = [], []
    done, bar = 0, -np.inf
    while done < len(scores) and scores[done] >= bar:
        # scores is descending, so the candidates at or above the bar come first.
        reachable = np.searchsorted(-scores, -bar, side="right")
        end = min(done + (cfg.nms_pre if done == 0 else SCORING_BATCH), reachable)
        batch_probs, batch_scores = rescore(kernels[cells[done:end]], flat_feat,
                                            scores[done:end], cell_strides[cells[done:end]],
                                            cfg.mask_thr)
        probs.append(batch_probs)
        rescored.append(batch_scores)
        done = end
        bar = _nth_largest(np.concatenate(rescored), cfg.nms_pre)

    rescored = np.concatenate(rescored) if rescored else np.zeros(0, np.float32)
    valid = np.flatnonzero(rescored > -np.inf)
    best = valid[_best_first(rescored[valid])[:cfg.nms_pre]]
    # Each batch gives its own chosen rows: concatenating the batches first would copy
    # every scored mask, most of which are dropped.
    chosen = np.empty((len(best), flat_feat.shape[1]), np.float32)
    starts = np.cumsum([0] + [len(batch) for batch in probs])
    for batch, start, stop in zip(probs, starts[:-1], starts[1:]):
        here = (best >= start) & (best < stop)
        chosen[here] = batch[best[here] - start]
    return chosen, labels[best], rescored[best]


def rescore(kernels, flat_feat, scores, strides, mask_thr):
    """Steps 2-4 for m candidates: kernels [m, E] on the mask feature [E, P] -> mask
    probabilities [m, P] and re-scored scores [m] (-inf where the mask is not larger
    than its level's stride)."""
    probs = kernels @ flat_feat
    # sigmoid, in place: the array is the largest one here.
    np.negative(probs, out=probs)
    np.exp(probs, out=probs)
    probs += 1
    np.reciprocal(probs, out=probs)
    masks = probs > mask_thr
    areas = masks.sum(axis=1)
    # (A product, not np.sum(where=...): that one is 6x slower and sums less exactly.)
    maskness = (probs * masks).sum(axis=1) / np.maximum(areas, 1).astype(np.float32)
    rescored = np.where(areas > strides, scores * maskness, -np.inf).astype(np.float32)
    return probs, rescored


def matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0):
    """Matrix NMS (SOLOv2 paper, Sec. 4.2, Eq. 3-4): decay every score at once.

    Args:
        masks: [n, h, w] or [n, P] binary masks (bool or 0/1), sorted by descending score.
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
    # float32 counts pixels exactly up to 2^24, far above any mask-feature size.
    flat = masks.reshape(len(masks), np.prod(masks.shape[1:], dtype=int)).astype(np.float32)
    areas = flat.sum(axis=1)
    decay = np.ones(len(flat), np.float32)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        group = flat[members]
        inter = group @ group.T
        union = areas[members, None] + areas[None, members] - inter
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


def paste_masks(probs, crop_hw, ori_hw, mask_thr):
    """[k, h, w] mask probabilities at stride 4 -> [k, H, W] bool at the original size:
    upsampled 4x to the padded input, cropped to the resized image, resized to the original
    (both bilinear, half-pixel centres), then binarised [SOLO get_seg_single].

    OpenCV's INTER_LINEAR is that resize (PyTorch align_corners=False); on float32 it stays
    within 2e-7 of the exact half-pixel formula (tests/model/test_postprocess.py).
    """
    (crop_h, crop_w), (ori_h, ori_w) = crop_hw, ori_hw
    masks = np.empty((len(probs), ori_h, ori_w), bool)
    # One float32 image at the original size, reused by every mask: memory stays at one
    # image plus the binary masks, and an 8000 x 6000 photo is not given 192 MB of fresh
    # pages per mask, which took longer than the resize itself.
    buffer = np.empty((ori_h, ori_w), probs.dtype) if len(probs) else None
    for mask, prob in zip(masks, probs):
        h, w = prob.shape
        up = cv2.resize(prob, (4 * w, 4 * h), interpolation=cv2.INTER_LINEAR)
        # (cv2 writes into ``buffer`` when size and type fit, else returns a new array.)
        resized = cv2.resize(up[:crop_h, :crop_w], (ori_w, ori_h), dst=buffer,
                             interpolation=cv2.INTER_LINEAR)
        np.greater(resized, mask_thr, out=mask)
    return masks


def masks_to_boxes(masks):
    """[k, H, W] bool -> [k, 4] float32 boxes (x0, y0, x1, y1) with exclusive ends, i.e.
    pixel-edge coordinates; an empty mask gets an all-zero box."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        cols = np.flatnonzero(mask.any(axis=0))
        if cols.size == 0:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _best_first(scores):
    """Indices that sort ``scores`` descending; ties keep their order."""
    return np.argsort(-scores, kind="stable")


def _nth_largest(values, n):
    """The n-th largest of ``values``, or -inf when there are fewer than n."""
    if len(values) < n:
        return -np.inf
    return np.partition(values, len(values) - n)[len(values) - n]
