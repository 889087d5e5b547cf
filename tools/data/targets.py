"""SOLOv2 training targets: which grid cells of which level own which instance.

For every instance of an image (Wang et al. 2020, Sec. 3.1 and 3.3; the rules below are
those of SOLO's ``solov2_target_single`` and PaddleDetection's ``Gt2Solov2Target``):
  1. level: every level whose scale range [lo, hi] holds sqrt(w * h) of the instance box
     (ranges overlap, so an instance can be positive on two levels);
  2. centre: the mask's centre of mass, in the padded batch image;
  3. centre region: the box scaled by sigma (0.2) around that centre, in grid cells,
     clipped to the 3 x 3 cells around the centre cell;
  4. those cells get the class (category grid) and a copy of the mask downsampled to the
     mask-feature stride 4 (one mask per cell, listed in grid order).
Cells are numbered as the model's eval output is: levels in order, row-major in each.
"""

import cv2
import numpy as np

from model.postprocess import masks_to_boxes

from .preprocess import pad_batch

MASK_STRIDE = 4  # the unified mask feature is at 1/4 of the input [SOLOv2 Sec. 3.2.2]


def downsample_mask(mask, stride=MASK_STRIDE):
    """0/1 uint8 [H, W] -> [round(H / stride), round(W / stride)], bilinear as mmcv.imrescale
    (size int(x * scale + 0.5)); on 0/1 pixels bilinear-then-round keeps values 0/1."""
    h, w = mask.shape
    size = (int(w / stride + 0.5), int(h / stride + 0.5))
    return cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)


def _cell(coord, extent, grid):
    # Same arithmetic as both references: position as a fraction of the padded image,
    # floor-divided by the cell size 1/S.
    return int((coord / extent) // (1.0 / grid))


def center_region(mask, box, pad_hw, grid, sigma):
    """(top, bottom, left, right) inclusive cell range of one instance on an S x S grid."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()  # centre of mass of a 0/1 mask
    half_w = 0.5 * (box[2] - box[0]) * sigma
    half_h = 0.5 * (box[3] - box[1]) * sigma
    pad_h, pad_w = pad_hw
    row, col = _cell(cy, pad_h, grid), _cell(cx, pad_w, grid)
    top = max(0, _cell(cy - half_h, pad_h, grid), row - 1)
    bottom = min(grid - 1, _cell(cy + half_h, pad_h, grid), row + 1)
    left = max(0, _cell(cx - half_w, pad_w, grid), col - 1)
    right = min(grid - 1, _cell(cx + half_w, pad_w, grid), col + 1)
    return top, bottom, left, right


def image_targets(masks, labels, pad_hw, num_grids, scale_ranges, sigma):
    """Targets of one image.

    masks: [K, h, w] uint8 0/1 at the resized (unpadded) image size; labels: [K] in 0..C-1;
    pad_hw: the padded batch size (multiples of 32).
    Returns (cate_labels, ins_index, ins_masks):
        cate_labels: list over levels of int64 [S, S], 0 = background, c + 1 = class c;
        ins_index:   int64 [P], the positive cells in the image's flattened grid;
        ins_masks:   uint8 [P, pad_h / 4, pad_w / 4], the instance mask of each positive.
    Levels without positives simply contribute nothing.
    """
    feat_hw = (pad_hw[0] // MASK_STRIDE, pad_hw[1] // MASK_STRIDE)
    boxes = masks_to_boxes(masks)
    sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    cate_labels, index, small_masks = [], [], []
    offset = 0
    for grid, (lo, hi) in zip(num_grids, scale_ranges):
        cate = np.zeros((grid, grid), np.int64)
        for k in np.flatnonzero((sizes >= lo) & (sizes <= hi)):
            if not masks[k].any():
                continue
            top, bottom, left, right = center_region(masks[k], boxes[k], pad_hw, grid, sigma)
            cate[top:bottom + 1, left:right + 1] = labels[k] + 1
            small = downsample_mask(masks[k])[:feat_hw[0], :feat_hw[1]]
            for i in range(top, bottom + 1):
                for j in range(left, right + 1):
                    index.append(offset + i * grid + j)
                    small_masks.append(small)
        cate_labels.append(cate)
        offset += grid * grid
    ins_masks = np.zeros((len(small_masks),) + feat_hw, np.uint8)
    for p, small in enumerate(small_masks):
        ins_masks[p, :small.shape[0], :small.shape[1]] = small
    return cate_labels, np.asarray(index, np.int64), ins_masks


class TargetCollator:
    """Batch transform: pad images to a multiple of 32 and build the targets.

    __call__(samples) with samples of dict(image [3, h, w] float32, masks [K, h, w] uint8,
    labels [K]) -> dict(images [N, 3, H, W], cate_labels list over levels of [N, S, S],
    ins_index list over images of [P_i], ins_masks list over images of [P_i, H/4, W/4],
    num_pos: positive cells in the batch, as an int64 array of shape [1]).
    """

    def __init__(self, num_grids, scale_ranges, sigma):
        self.num_grids = tuple(num_grids)
        self.scale_ranges = tuple(scale_ranges)
        self.sigma = sigma

    def __call__(self, samples):
        images = pad_batch([s["image"] for s in samples])
        pad_hw = images.shape[2:]
        per_level = [[] for _ in self.num_grids]
        ins_index, ins_masks = [], []
        num_pos = 0
        for s in samples:
            cates, index, masks = image_targets(s["masks"], s["labels"], pad_hw,
                                                self.num_grids, self.scale_ranges, self.sigma)
            for level, cate in enumerate(cates):
                per_level[level].append(cate)
                num_pos += int((cate > 0).sum())
            ins_index.append(index)
            ins_masks.append(masks)
        return {"images": images,
                "cate_labels": [np.stack(level) for level in per_level],
                "ins_index": ins_index, "ins_masks": ins_masks,
                "num_pos": np.array([num_pos], np.int64)}
