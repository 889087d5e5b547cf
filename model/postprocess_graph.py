"""The post-processing of :mod:`model.postprocess` as Paddle tensor ops, for the exported
inference graph (tools/deploy/export.py): the same steps 1-6 and the same detections, written
so that nothing branches on data in Python and every step accepts zero masks.

The eager form in :mod:`model.postprocess` (numpy) is what demo, eval and training run;
the two are checked against each other and against a brute-force version in tests/model.
"""

import paddle
import paddle.nn.functional as F

from .head import bilinear
from .postprocess import check_nms_kernel


def segment(cate_scores, kernels, mask_feat, cell_strides, crop_hw, ori_hw, cfg):
    """Masks for one image, as tensors: what the exported inference graph computes
    (:func:`model.postprocess.get_seg_single` with tensors in and out).

    Args:
        cate_scores: [L, C] category probabilities after points NMS, L = sum(S^2) cells in
            level order, each level's cells row-major.
        kernels: [L, E] dynamic kernels, same cell order.
        mask_feat: [E, h, w] unified mask feature at stride 4 of the padded input.
        cell_strides: [L] float32 stride of each cell's level.
        crop_hw: (height, width) of the resized image inside the padded input.
        ori_hw: (height, width) of the original image. Both pairs are ints or int32
            tensors (in an exported graph they come from the inputs).
        cfg: test settings (score_thr, mask_thr, nms_pre, nms_kernel, nms_sigma,
            update_thr, max_per_img).

    Returns:
        masks [k, H, W] bool, labels [k] int64, scores [k] float32, boxes [k, 4] float32,
        best first; k may be 0.

    All k masks are resized at once (the eager form resizes them one by one).
    """
    seg_preds, labels, scores = kept_masks(cate_scores, kernels, mask_feat, cell_strides, cfg)
    count = paddle.shape(seg_preds)[1].astype("int32")
    feat_hw = paddle.shape(mask_feat)[1:].astype("int32")
    # In a saved graph Paddle Inference's resize returns a tensor of unknown rank when it
    # gets no mask at all, and the next op fails; so one empty mask rides along behind
    # the real ones and is cut off at the end.
    empty = paddle.zeros([1, 1, feat_hw[0], feat_hw[1]], seg_preds.dtype)
    seg_preds = paddle.concat([seg_preds, empty], axis=1)
    masks = paste_masks(seg_preds, feat_hw, crop_hw, ori_hw, cfg.mask_thr)
    return masks[:count], labels, scores, mask_boxes(masks)[:count]


def kept_masks(cate_scores, kernels, mask_feat, cell_strides, cfg):
    """Steps 1-5 for one image (arguments as in :func:`segment`): the mask probabilities
    of the detections kept, [1, k, h, w] at the mask-feature size, with their labels [k]
    and scores [k], best first."""
    candidates = paddle.nonzero(cate_scores > cfg.score_thr)
    scores = paddle.gather_nd(cate_scores, candidates)
    flat_feat = mask_feat.flatten(1)
    feat_hw = paddle.shape(mask_feat)[1:].astype("int32")

    def rescored_masks(index):
        """Steps 2-4 for the candidates at ``index``: (mask probabilities [m, h*w],
        re-scored scores [m], labels [m], mask areas [m]); the score is -1 where the mask
        is not larger than its level's stride. The large probability tensor is returned
        whole, and only the rows that go on are gathered later."""
        cells, labels, cand_scores = _take(index, candidates[:, 0], candidates[:, 1], scores)
        kernels_, strides = _take(cells, kernels, cell_strides)
        seg_preds = F.sigmoid(paddle.matmul(kernels_, flat_feat))
        seg_masks = (seg_preds > cfg.mask_thr).astype("float32")
        sum_masks = seg_masks.sum(axis=1)
        # Areas of kept masks exceed the stride (>= 8), so the clip only guards the rest.
        maskness = (seg_preds * seg_masks).sum(axis=1) / paddle.clip(sum_masks, min=1.0)
        rescored = paddle.where(sum_masks > strides, cand_scores * maskness,
                                paddle.full_like(cand_scores, -1.0))
        return seg_preds, rescored, labels, sum_masks

    # Only the nms_pre best re-scored masks go on, and re-scoring never raises a score
    # (maskness <= 1). So masks are first computed for the 2 * nms_pre best-scored
    # candidates only; another candidate can still enter the best nms_pre only if its
    # score reaches the nms_pre-th re-scored one among those. This selects the same masks
    # as scoring every candidate, at a fraction of the cost when there are thousands. (The
    # eager form repeats the test after every batch; a graph without loops does it once.)
    by_score = paddle.argsort(scores, descending=True)
    first = rescored_masks(by_score[:2 * cfg.nms_pre])
    floor = paddle.full([cfg.nms_pre], -1.0, "float32")  # fewer than nms_pre: take all
    bar = paddle.concat([paddle.sort(first[1], descending=True), floor])[cfg.nms_pre - 1]
    rest = by_score[2 * cfg.nms_pre:]
    rest = paddle.gather(rest, paddle.nonzero(paddle.gather(scores, rest) >= bar).flatten())
    second = rescored_masks(rest)

    # The nms_pre best masks larger than their stride, as indices into first + second.
    scores, labels, sum_masks = [paddle.concat(pair) for pair in zip(first[1:], second[1:])]
    valid = paddle.nonzero(scores > 0).flatten()
    chosen = paddle.gather(valid, _top(paddle.gather(scores, valid), cfg.nms_pre))
    seg_preds = _rows(chosen, first[0], second[0])
    scores, labels, sum_masks = _take(chosen, scores, labels, sum_masks)

    seg_masks = (seg_preds > cfg.mask_thr).astype("float32")
    scores = scores * decay_coefficients(seg_masks, labels, sum_masks, cfg.nms_kernel,
                                         cfg.nms_sigma)

    keep = paddle.nonzero(scores >= cfg.update_thr).flatten()
    order = paddle.gather(keep, _top(paddle.gather(scores, keep), cfg.max_per_img))
    seg_preds, scores, labels = _take(order, seg_preds, scores, labels)

    # The count is explicit and stays in the first place: -1 cannot be inferred when there
    # is no mask, and a 0 in a shape means "keep this dimension" (Paddle and ONNX), which
    # is right only where the input's dimension is that same count.
    count = paddle.shape(seg_preds)[0].astype("int32")
    seg_preds = seg_preds.reshape([count, feat_hw[0], feat_hw[1]]).unsqueeze(0)
    return seg_preds, labels, scores


def decay_coefficients(flat, labels, sum_masks, kernel, sigma):
    """Matrix NMS in one dense product for all classes (the eager
    :func:`model.postprocess.matrix_nms` decays each class on its own; in a graph a loop
    over the classes present would depend on the data): [n, P] 0/1 float masks in score
    order, [n] labels and areas -> [n] decay factors. Broadcasting only, no branch on n,
    so it also runs for n = 0."""
    check_nms_kernel(kernel)
    inter = paddle.matmul(flat, flat, transpose_y=True)
    union = sum_masks.unsqueeze(1) + sum_masks.unsqueeze(0) - inter
    iou = paddle.triu(inter / union, diagonal=1)
    same_class = (labels.unsqueeze(1) == labels.unsqueeze(0)).astype("float32")
    decay_iou = iou * paddle.triu(same_class, diagonal=1)
    # compensate_iou[i]: the largest IoU mask i has with any earlier mask of its class. A
    # row of zeros joins the maximum: IoUs are >= 0, so it changes nothing, but it keeps
    # the reduction defined when n = 0.
    zeros = paddle.zeros_like(sum_masks).unsqueeze(0)  # [1, n]
    compensate_iou = paddle.concat([zeros, decay_iou]).max(axis=0).unsqueeze(1)
    if kernel == "gaussian":
        decay = paddle.exp(-sigma * decay_iou ** 2) / paddle.exp(-sigma * compensate_iou ** 2)
    else:
        decay = (1 - decay_iou) / (1 - compensate_iou)
    # Likewise a row of ones joins the minimum. Each column's minimum is <= 1 anyway (row 0
    # has compensate 0, so its decay is f(iou) <= 1 within the class and exactly 1 across
    # classes), hence the extra row never decides -- and a class's decays are the same
    # whether or not other classes share the matrix.
    return paddle.concat([paddle.ones_like(zeros), decay]).min(axis=0)


def paste_masks(seg_preds, feat_hw, crop_hw, ori_hw, mask_thr):
    """[1, k, h, w] mask probabilities at stride 4 -> [k, H, W] bool at the original size:
    upsampled 4x to the padded input, cropped to the resized image, resized to the original
    (both bilinear, half-pixel centres), then binarised [SOLO get_seg_single]."""
    up = bilinear(seg_preds, size=feat_hw * 4)
    up = paddle.slice(up, axes=[2, 3], starts=[0, 0], ends=[crop_hw[0], crop_hw[1]])
    return bilinear(up, size=[ori_hw[0], ori_hw[1]])[0] > mask_thr


def mask_boxes(masks):
    """The tensor form of :func:`model.postprocess.masks_to_boxes`: [k, H, W] bool
    -> [k, 4] float32 (x0, y0, x1, y1), exclusive ends, zeros for an empty mask."""
    def extent(occupied):  # [k, n] bool -> first index, last index + 1 (0, 0 if none)
        n = paddle.shape(occupied)[1]
        index = paddle.arange(n, dtype="float32").unsqueeze(0)
        first = paddle.where(occupied, index, paddle.full_like(index, 1e9)).min(axis=1)
        end = paddle.where(occupied, index + 1, paddle.zeros_like(index)).max(axis=1)
        return paddle.where(end > 0, first, paddle.zeros_like(first)), end

    x0, x1 = extent(masks.any(axis=1))
    y0, y1 = extent(masks.any(axis=2))
    return paddle.stack([x0, y0, x1, y1], axis=1)


def _take(index, *tensors):
    return [paddle.gather(t, index) for t in tensors]


def _rows(index, first, second):
    """Rows ``index`` of concat([first, second]) in that order, without concatenating the
    two (large) tensors: each side gives its rows, and one small gather restores the order."""
    split = paddle.shape(first)[0]
    from_first = paddle.nonzero(index < split).flatten()
    from_second = paddle.nonzero(index >= split).flatten()
    rows = paddle.concat([paddle.gather(first, paddle.gather(index, from_first)),
                          paddle.gather(second, paddle.gather(index, from_second) - split)])
    # rows holds the first-side picks, then the second-side ones; put them back in order.
    position = paddle.argsort(paddle.concat([from_first, from_second]))
    return paddle.gather(rows, position)


def _top(scores, k):
    """Indices of the ``k`` highest scores, best first."""
    order = paddle.argsort(scores, descending=True)
    return order[:k]
