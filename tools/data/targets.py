"""SOLOv2 training targets: which grid cells of which level own which instance.

For every instance of an image (Wang et al. 2020, Sec. 3.1 and 3.3; the rules below are
those of SOLO's ``solov2_target_single`` and PaddleDetection's ``Gt2Solov2Target``, which
agree on all of them):
  1. level: every level whose scale range [lo, hi] holds sqrt(w * h) of the instance's
     annotation box, moved with the image (tools/data/boxes.py); ranges overlap, so an
     instance can be positive on two levels;
  2. centre: the mask's centre of mass;
  3. centre region: the box scaled by sigma (0.2) around that centre, in grid cells of the
     padded batch image, clipped to the 3 x 3 cells around the centre cell;
  4. those cells get the class (category grid) and the instance's mask at the mask-feature
     stride 4 (one mask per cell, listed in grid order).
Cells are numbered as the model's eval output is: levels in order, row-major in each.

What the references feed their loss as the mask of a positive, read from their code:
  PaddleDetection 2.x (PadBatch(pad_to_stride=32) then Gt2Solov2Target): PadBatch pads every
    image and every mask of the batch with zeros to the batch's largest height and width,
    each rounded up to a multiple of 32. Gt2Solov2Target then downsamples that padded mask
    with cv2.resize(fx=fy=1/4, INTER_LINEAR) to exactly (H/4, W/4) of the padded batch, and
    takes the grid geometry from the same padded size (int(H/4) * 4 = H).
  SOLO (mmdet 1.0 Pad(size_divisor=32), collate, SOLOv2Head.solov2_target_single): Pad pads
    each image and its masks with zeros to the image's OWN multiple of 32; collate pads the
    images (not the masks) to the batch's largest. solov2_target_single downsamples the
    per-image padded mask with mmcv.imrescale(1/4) -- size int(x/4 + 0.5) = x/4 exactly,
    since x is a multiple of 32, and cv2.resize(INTER_LINEAR) to that size -- and copies it
    into the top-left of a zero (H/4, W/4) array of the padded batch feature size; its grid
    geometry is that feature size times 4, the padded batch size.
  The two are the same array: at an exact 1/4, OpenCV's bilinear output pixel i reads input
  pixels 4i+1 and 4i+2 only (weights 1/2 each), so the zeros beyond an image's own multiple
  of 32 only ever produce zeros. dsize (x/4, y/4) and fx = fy = 0.25 give the same scale
  and the same arithmetic. On 0/1 uint8 masks the rounded bilinear average is 1 where at
  least two of the four pixels read are 1, so the target stays 0/1 uint8.
  Centre of mass: PaddleDetection uses scipy.ndimage.center_of_mass of the padded mask (the
  padding adds nothing), an exact sum of pixel indices in float64 divided once: what
  :func:`center_of_mass` computes here from integer sums, bit for bit. SOLO sums index x
  mask in float32 with torch and divides in float32: equal to ours while the sums stay below
  2**24, otherwise rounded in torch's summation order. The cell arithmetic, int((c / H) //
  (1 / S)), is that of both; SOLO evaluates it in float32, PaddleDetection in float64 with a
  float32 box, as here (tests/tools/data/test_targets_reference.py compares both on real
  photos).
"""

import cv2
import numpy as np

from model.postprocess import masks_to_boxes

from .preprocess import pad_batch

MASK_STRIDE = 4  # the unified mask feature is at 1/4 of the input [SOLOv2 Sec. 3.2.2]


def downsample_mask(mask, pad_hw, stride=MASK_STRIDE):
    """0/1 uint8 [h, w] -> [pad_h / stride, pad_w / stride]: the mask zero-padded to the
    batch size ``pad_hw`` (multiples of 32), then bilinear at exactly 1 / stride, as both
    references build the target (module docstring)."""
    padded = np.zeros(tuple(pad_hw), np.uint8)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    scale = 1.0 / stride
    return cv2.resize(padded, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)


def _cell(coord, extent, grid):
    # Same arithmetic as both references: position as a fraction of the padded image,
    # floor-divided by the cell size 1/S.
    return int((coord / extent) // (1.0 / grid))


def center_of_mass(mask):
    """(row, column) centre of mass of the mask's non-zero pixels, as float64: the exact
    integer sums of their indices divided once, which is what scipy's center_of_mass and
    ``np.nonzero(mask)[0].mean()`` give (their float64 sums of integers below 2**53 are
    exact in any order), without listing the pixels."""
    rows = np.count_nonzero(mask, axis=1)
    cols = np.count_nonzero(mask, axis=0)
    count = int(rows.sum())
    return (int(rows @ np.arange(len(rows), dtype=np.int64)) / count,
            int(cols @ np.arange(len(cols), dtype=np.int64)) / count)


def center_region(mask, box, pad_hw, grid, sigma, center=None):
    """(top, bottom, left, right) inclusive cell range of one instance on an S x S grid;
    ``center``: the mask's center_of_mass, when already known."""
    cy, cx = center_of_mass(mask) if center is None else center
    # In the box's dtype, as the references (float32 boxes give float32 half sizes).
    half_w = 0.5 * (box[2] - box[0]) * sigma
    half_h = 0.5 * (box[3] - box[1]) * sigma
    pad_h, pad_w = pad_hw
    row, col = _cell(cy, pad_h, grid), _cell(cx, pad_w, grid)
    top = max(0, _cell(cy - half_h, pad_h, grid), row - 1)
    bottom = min(grid - 1, _cell(cy + half_h, pad_h, grid), row + 1)
    left = max(0, _cell(cx - half_w, pad_w, grid), col - 1)
    right = min(grid - 1, _cell(cx + half_w, pad_w, grid), col + 1)
    return top, bottom, left, right


def image_targets(masks, labels, pad_hw, num_grids, scale_ranges, sigma, boxes=None):
    """Targets of one image.

    masks: [K, h, w] uint8 0/1 at the resized (unpadded) image size; labels: [K] in 0..C-1;
    pad_hw: the padded batch size (multiples of 32); boxes: [K, 4] (x1, y1, x2, y2) annotation
    boxes in the config's reference convention (tools/data/boxes.py), or None for the
    masks' own boxes (exclusive ends).
    Returns (cate_labels, ins_index, ins_masks):
        cate_labels: list over levels of int64 [S, S], 0 = background, c + 1 = class c;
        ins_index:   int64 [P], the positive cells in the image's flattened grid;
        ins_masks:   uint8 [P, pad_h / 4, pad_w / 4], the instance mask of each positive.
    Levels without positives simply contribute nothing; so does an instance whose mask is
    empty (both references skip it).
    """
    feat_hw = (pad_hw[0] // MASK_STRIDE, pad_hw[1] // MASK_STRIDE)
    if boxes is None:
        boxes = masks_to_boxes(masks)
    with np.errstate(invalid="ignore"):  # an inverted box's NaN size is in no range
        sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        in_range = [np.flatnonzero((sizes >= lo) & (sizes <= hi)) for lo, hi in scale_ranges]
    cate_labels, index, small_masks = [], [], []
    small = {}  # instance -> its target mask, made once even when on two levels
    centers = {}  # instance -> its centre of mass (None: empty mask), likewise
    offset = 0
    for grid, hits in zip(num_grids, in_range):
        cate = np.zeros((grid, grid), np.int64)
        for k in hits:
            if k not in centers:
                centers[k] = center_of_mass(masks[k]) if masks[k].any() else None
            if centers[k] is None:
                continue
            top, bottom, left, right = center_region(masks[k], boxes[k], pad_hw, grid, sigma,
                                                     centers[k])
            cate[top:bottom + 1, left:right + 1] = labels[k] + 1
            if k not in small:
                small[k] = downsample_mask(masks[k], pad_hw)[:feat_hw[0], :feat_hw[1]]
            for i in range(top, bottom + 1):
                for j in range(left, right + 1):
                    index.append(offset + i * grid + j)
                    small_masks.append(small[k])
        cate_labels.append(cate)
        offset += grid * grid
    ins_masks = np.zeros((len(small_masks),) + feat_hw, np.uint8)
    for p, target in enumerate(small_masks):
        ins_masks[p] = target
    return cate_labels, np.asarray(index, np.int64), ins_masks


class TargetCollator:
    """Batch transform: pad images to a multiple of 32 and build the targets.

    __call__(samples) with samples of dict(image [3, h, w] float32, masks [K, h, w] uint8,
    labels [K], and boxes [K, 4] in the reference's convention -- without it, the masks'
    boxes) -> dict(images [N, 3, H, W], cate_labels list over levels of [N, S, S],
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
                                                self.num_grids, self.scale_ranges, self.sigma,
                                                boxes=s.get("boxes"))
            for level, cate in enumerate(cates):
                per_level[level].append(cate)
                num_pos += int((cate > 0).sum())
            ins_index.append(index)
            ins_masks.append(masks)
        return {"images": images,
                "cate_labels": [np.stack(level) for level in per_level],
                "ins_index": ins_index, "ins_masks": ins_masks,
                "num_pos": np.array([num_pos], np.int64)}
