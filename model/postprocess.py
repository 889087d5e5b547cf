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
"""

import numpy as np
import paddle
import paddle.nn.functional as F

from .head import bilinear


def points_nms(heat):
    """Keep a score only where it is the maximum of its 2x2 neighbourhood (up and left).

    heat: [N, C, S, S] probabilities -> same shape, non-maxima set to 0. A 2x2 max-pool with
    padding 1 and stride 1 gives S+1 outputs; dropping the last row and column aligns
    output (i, j) with the window over cells (i-1..i, j-1..j) [SOLO points_nms].
    """
    hmax = F.max_pool2d(heat, 2, stride=1, padding=1)
    keep = (hmax[:, :, :-1, :-1] == heat).astype(heat.dtype)
    return heat * keep


def matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0, sum_masks=None):
    """Matrix NMS (SOLOv2 paper, Sec. 4.2, Eq. 3-4): decay every score at once.

    Args:
        masks: [n, h, w] binary masks (bool or 0/1 float), sorted by descending score.
        labels: [n] class of each mask.
        scores: [n] scores, descending.
        kernel: 'gaussian' (decay exp(-sigma * iou^2)) or 'linear' (decay 1 - iou).
        sum_masks: [n] pixel counts of ``masks``; computed when omitted.

    Returns:
        [n] decayed scores. For mask j, the decay is the minimum over higher-scored masks i
        of the same class of f(iou_ij) / f(max iou of i with any higher-scored mask of its
        class), which approximates how far i itself was suppressed.
    """
    n = labels.shape[0]
    if n == 0:
        return scores
    flat = masks.reshape([n, -1]).astype("float32")
    if sum_masks is None:
        sum_masks = flat.sum(axis=1)
    inter = paddle.matmul(flat, flat, transpose_y=True)
    sums = sum_masks.astype("float32").expand([n, n])
    iou = paddle.triu(inter / (sums + sums.T - inter), diagonal=1)
    same_class = (labels.expand([n, n]) == labels.expand([n, n]).T).astype("float32")
    decay_iou = iou * paddle.triu(same_class, diagonal=1)
    # Row i of compensate_iou is the largest IoU mask i has with any earlier mask.
    compensate_iou = decay_iou.max(axis=0).expand([n, n]).T
    if kernel == "gaussian":
        decay = paddle.exp(-sigma * decay_iou ** 2) / paddle.exp(-sigma * compensate_iou ** 2)
    elif kernel == "linear":
        decay = (1 - decay_iou) / (1 - compensate_iou)
    else:
        raise ValueError(f"Matrix NMS kernel must be 'gaussian' or 'linear', got {kernel!r}")
    return scores * decay.min(axis=0)


def _take(index, *tensors):
    return [paddle.gather(t, index) for t in tensors]


def _top(scores, k):
    """Indices of the ``k`` highest scores, best first."""
    order = paddle.argsort(scores, descending=True)
    return order[:k]


def empty_result(ori_hw):
    h, w = ori_hw
    return {"masks": np.zeros((0, h, w), bool), "labels": np.zeros((0,), np.int64),
            "scores": np.zeros((0,), np.float32), "boxes": np.zeros((0, 4), np.float32)}


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


def get_seg_single(cate_scores, kernels, mask_feat, cell_strides, crop_hw, ori_hw, cfg,
                   chunk=16):
    """Masks for one image.

    Args:
        cate_scores: [L, C] category probabilities after points NMS, L = sum(S^2) cells in
            level order, each level's cells row-major.
        kernels: [L, E] dynamic kernels, same cell order.
        mask_feat: [E, h, w] unified mask feature at stride 4 of the padded input.
        cell_strides: [L] float32 stride of each cell's level.
        crop_hw: (height, width) of the resized image inside the padded input.
        ori_hw: (height, width) of the original image.
        cfg: test settings (score_thr, mask_thr, nms_pre, nms_kernel, nms_sigma,
            update_thr, max_per_img).
        chunk: masks resized at a time in the last step (bounds memory; same result).

    Returns:
        dict of numpy arrays: masks [k, H, W] bool, labels [k] int64, scores [k] float32,
        boxes [k, 4] float32, best first; k may be 0.
    """
    candidates = paddle.nonzero(cate_scores > cfg.score_thr)
    if candidates.shape[0] == 0:
        return empty_result(ori_hw)
    cells, labels = candidates[:, 0], candidates[:, 1]
    scores = paddle.gather_nd(cate_scores, candidates)
    kernels, strides = _take(cells, kernels, cell_strides)

    e, h, w = mask_feat.shape
    seg_preds = F.sigmoid(paddle.matmul(kernels, mask_feat.reshape([e, h * w])))
    seg_preds = seg_preds.reshape([-1, h, w])
    seg_masks = (seg_preds > cfg.mask_thr).astype("float32")
    sum_masks = seg_masks.sum(axis=[1, 2])

    keep = paddle.nonzero(sum_masks > strides).flatten()
    if keep.shape[0] == 0:
        return empty_result(ori_hw)
    seg_preds, seg_masks, sum_masks, scores, labels = _take(
        keep, seg_preds, seg_masks, sum_masks, scores, labels)

    maskness = (seg_preds * seg_masks).sum(axis=[1, 2]) / sum_masks
    scores = scores * maskness

    order = _top(scores, cfg.nms_pre)
    seg_preds, seg_masks, sum_masks, scores, labels = _take(
        order, seg_preds, seg_masks, sum_masks, scores, labels)
    scores = matrix_nms(seg_masks, labels, scores, kernel=cfg.nms_kernel,
                        sigma=cfg.nms_sigma, sum_masks=sum_masks)

    keep = paddle.nonzero(scores >= cfg.update_thr).flatten()
    if keep.shape[0] == 0:
        return empty_result(ori_hw)
    seg_preds, scores, labels = _take(keep, seg_preds, scores, labels)
    order = _top(scores, cfg.max_per_img)
    seg_preds, scores, labels = _take(order, seg_preds, scores, labels)

    masks = []
    crop_h, crop_w = crop_hw
    for start in range(0, seg_preds.shape[0], chunk):
        part = seg_preds[start:start + chunk].unsqueeze(0)
        part = bilinear(part, size=(4 * h, 4 * w))[:, :, :crop_h, :crop_w]
        part = bilinear(part, size=tuple(ori_hw))[0]
        masks.append((part > cfg.mask_thr).numpy())
    masks = np.concatenate(masks)
    return {"masks": masks, "labels": labels.numpy().astype(np.int64),
            "scores": scores.numpy().astype(np.float32), "boxes": masks_to_boxes(masks)}


def cell_strides(num_grids, strides):
    """[L] float32: the stride of the level each grid cell belongs to."""
    return np.concatenate([np.full(g * g, s, np.float32) for g, s in zip(num_grids, strides)])
