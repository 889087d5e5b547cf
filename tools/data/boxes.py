"""Instance boxes through the training transforms, in each reference's conventions.

SOLOv2 assigns an instance to levels by sqrt(w * h) of its box and sizes its centre region
from the box (tools/data/targets.py), so the box must be the annotation's box moved with the
image exactly as the reference moved it. The three references disagree on pixel
conventions, and the differences reach the targets:

'mmcv' (SOLO, mmdet 1.0 CocoDataset._parse_ann_info, Resize, RandomFlip)
    load: (x, y, x + w - 1, y + h - 1), float32, not clipped;
    resize: times the scale the image was rescaled by (stays float32), then x clipped to
        [0, new_w - 1] and y to [0, new_h - 1] (new_w, new_h: the integer image size);
    flip: x1' = (W - x2) - 1, x2' = (W - x1) - 1, rounded to float32 after each step.
'ppdet_static' (PaddleDetection 0.5 COCODataSet, ResizeImage(resize_box), RandomFlipImage)
    load: x1 = max(0, x), x2 = min(W - 1, x1 + max(0, w - 1)) (likewise y), float32;
    resize: times the list [scale] * 4, which numpy makes a float64 array, so the boxes
        become float64; clipped to [0, scale * w - 1] (scale * w unrounded);
    flip: x1' = (W - x2) - 1, as mmdet.
'ppdet2' (PaddleDetection 2.x COCODataSet, Resize, RandomFlip)
    load: (x, y, x + w, y + h), float32, not clipped;
    resize: times scale in place (float32 boxes, the product in float64 since the scale is
        a numpy float64), clipped to [0, scale * w] (unrounded);
    flip: x1' = W - x2, x2' = W - x1.
Random crop (PaddleDetection RandomCrop, the same in 0.5 and 2.x) clips boxes to the crop and
shifts them by its corner, in the boxes' own dtype.

The dtype is part of the convention: the references compare sqrt(w * h) with the scale
ranges and compute the centre region in it.
"""

import numpy as np

STYLES = ("mmcv", "ppdet_static", "ppdet2")


def mask_boxes_xywh(masks):
    """COCO [x, y, w, h] of each mask's pixels: what a COCO tool writes for an annotation
    drawn from that mask; all zeros for an empty mask. [K, H, W] -> float64 [K, 4]."""
    boxes = np.zeros((len(masks), 4), np.float64)
    for k, mask in enumerate(masks):
        cols = np.flatnonzero(mask.any(axis=0))
        if cols.size:
            rows = np.flatnonzero(mask.any(axis=1))
            boxes[k] = (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    return boxes


def from_coco(xywh, height, width, style):
    """COCO [K, 4] (x, y, w, h) boxes of an image of height x width -> the reference's
    (x1, y1, x2, y2) at load time, float32. Pass the annotation's numbers as float64: the
    references add them in double precision before rounding to float32."""
    xywh = np.asarray(xywh, np.float64).reshape(-1, 4)
    x, y, w, h = xywh.T
    if style == "mmcv":
        boxes = np.stack([x, y, x + w - 1, y + h - 1], axis=1)
    elif style == "ppdet_static":
        x1, y1 = np.maximum(0, x), np.maximum(0, y)
        boxes = np.stack([x1, y1, np.minimum(width - 1, x1 + np.maximum(0, w - 1)),
                          np.minimum(height - 1, y1 + np.maximum(0, h - 1))], axis=1)
    elif style == "ppdet2":
        boxes = np.stack([x, y, x + w, y + h], axis=1)
    else:
        raise ValueError(f"unknown box style {style!r}")
    return boxes.astype(np.float32)


def resize(boxes, scale, src_hw, new_hw, style):
    """Boxes after their image of size ``src_hw`` was resized by ``scale`` to the integer
    size ``new_hw`` (the clipping rules are in the module docstring)."""
    if style == "mmcv":
        out = boxes * scale
        out[:, 0::2] = np.clip(out[:, 0::2], 0, new_hw[1] - 1)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, new_hw[0] - 1)
        return out
    # PaddleDetection clips to the unrounded size.
    resized_h, resized_w = scale * float(src_hw[0]), scale * float(src_hw[1])
    if style == "ppdet_static":
        out = boxes * np.array([scale, scale] * 2)   # float64, as the list product there
        out[:, 0::2] = np.clip(out[:, 0::2], 0, resized_w - 1)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, resized_h - 1)
        return out
    # 2.x's scale is a numpy float64 (ratio of numpy ints): under numpy 2 the float32
    # boxes are multiplied in float64 and rounded back.
    out = boxes.copy()
    out[:, 0::2] *= np.float64(scale)
    out[:, 1::2] *= np.float64(scale)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, resized_w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, resized_h)
    return out


def hflip(boxes, width, style):
    """Boxes of an image of ``width`` columns after a horizontal flip."""
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    if style != "ppdet2":
        out[:, [0, 2]] -= 1  # a second rounding, as (W - x2) - 1 is evaluated there
    return out


def crop_iou(boxes, crop):
    """IoU of each box with one crop window (x1, y1, x2, y2), with the +1e-10 of
    PaddleDetection's RandomCrop, in float32 as there."""
    crop = np.asarray(crop, np.float32)
    lt = np.maximum(boxes[:, :2], crop[:2])
    rb = np.minimum(boxes[:, 2:], crop[2:])
    inter = np.prod(rb - lt, axis=1) * (lt < rb).all(axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + np.prod(crop[2:] - crop[:2]) - inter + 1e-10)


def crop(boxes, window):
    """(boxes clipped to ``window`` and shifted to its corner, indices of the instances the
    crop keeps): those whose box centre lies in the window, half-open on the far side, and
    whose clipped box is not empty."""
    window = np.asarray(window, np.float32)
    out = boxes.copy()
    out[:, :2] = np.maximum(boxes[:, :2], window[:2])
    out[:, 2:] = np.minimum(boxes[:, 2:], window[2:])
    out[:, :2] -= window[:2]
    out[:, 2:] -= window[:2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((window[:2] <= centres) & (centres < window[2:])).all(axis=1)
    return out, np.flatnonzero(inside & (out[:, :2] < out[:, 2:]).all(axis=1))
