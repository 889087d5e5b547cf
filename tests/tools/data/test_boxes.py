"""Box conventions of the three references, on numbers worked out by hand from their code."""

import numpy as np
import pytest

from tools.data import boxes as box_ops

# A COCO box at x 10.5, y 20, 30 wide, 40 high, and one reaching past the left/top edge.
XYWH = np.array([[10.5, 20.0, 30.0, 40.0], [-4.0, -2.0, 10.0, 6.0]])


def test_load_conventions():
    mmcv = box_ops.from_coco(XYWH, 100, 200, "mmcv")
    static = box_ops.from_coco(XYWH, 100, 200, "ppdet_static")
    two = box_ops.from_coco(XYWH, 100, 200, "ppdet2")
    assert mmcv.dtype == static.dtype == two.dtype == np.float32
    # mmdet: (x, y, x + w - 1, y + h - 1), not clipped.
    assert mmcv.tolist() == [[10.5, 20.0, 39.5, 59.0], [-4.0, -2.0, 5.0, 3.0]]
    # PaddleDetection 0.5: x1 = max(0, x), x2 = min(W - 1, x1 + w - 1) -- from the clipped x1.
    assert static.tolist() == [[10.5, 20.0, 39.5, 59.0], [0.0, 0.0, 9.0, 5.0]]
    # PaddleDetection 2.x: (x, y, x + w, y + h).
    assert two.tolist() == [[10.5, 20.0, 40.5, 60.0], [-4.0, -2.0, 6.0, 4.0]]
    assert box_ops.from_coco(np.zeros((0, 4)), 10, 10, "mmcv").shape == (0, 4)
    with pytest.raises(ValueError):
        box_ops.from_coco(XYWH, 100, 200, "yolo")


def test_load_adds_in_double_precision():
    # 0.1 + 0.2 in float64 rounds to another float32 than float32(0.1) + float32(0.2) does.
    box = np.array([[0.1, 0.0, 0.2, 1.0]])
    expected = np.float32(0.1 + 0.2)
    assert box_ops.from_coco(box, 10, 10, "ppdet2")[0, 2] == expected


def test_resize_clipping_and_dtypes():
    boxes = np.array([[10.0, 20.0, 190.0, 99.0]], np.float32)
    # Source 100 x 200 scaled by 0.5 to 50 x 100.
    mmcv = box_ops.resize(boxes, 0.5, (100, 200), (50, 100), "mmcv")
    assert mmcv.dtype == np.float32 and mmcv.tolist() == [[5.0, 10.0, 95.0, 49.0]]
    # Scaled by 0.6: x2 = 119.4 and y2 = 59.7; 2.x caps at scale * (w, h) = (120, 60) and
    # keeps them, 0.5 caps at one less (119, 59).
    wide = np.array([[10.0, 20.0, 199.0, 99.5]], np.float32)
    static = box_ops.resize(wide, 0.6, (100, 200), (60, 120), "ppdet_static")
    two = box_ops.resize(wide, 0.6, (100, 200), (60, 120), "ppdet2")
    assert static.dtype == np.float64 and two.dtype == np.float32
    np.testing.assert_allclose(static, [[6.0, 12.0, 119.0, 59.0]], rtol=1e-7)
    np.testing.assert_allclose(two, [[6.0, 12.0, 119.4, 59.7]], rtol=1e-6)
    # mmcv clips to the integer size minus one.
    over = box_ops.resize(wide, 0.6, (100, 200), (60, 120), "mmcv")
    assert over[0, 2] == 119.0 and over[0, 3] == 59.0


def test_2x_scales_float32_boxes_in_double_precision():
    # ppdet's scale is a numpy float64: float32 x float64 rounds once, float32 x float32
    # of the rounded scale can land an ulp away.
    boxes = np.array([[226.0, 0.0, 227.0, 1.0]], np.float32)
    scale = 352 / 375
    out = box_ops.resize(boxes, scale, (375, 500), (352, 469), "ppdet2")
    assert out[0, 0] == np.float32(226.0 * scale)


def test_flip_conventions():
    boxes = np.array([[10.0, 5.0, 59.0, 20.0]], np.float32)
    assert box_ops.hflip(boxes, 160, "mmcv").tolist() == [[100.0, 5.0, 149.0, 20.0]]
    assert box_ops.hflip(boxes, 160, "ppdet_static").tolist() == [[100.0, 5.0, 149.0, 20.0]]
    assert box_ops.hflip(boxes, 160, "ppdet2").tolist() == [[101.0, 5.0, 150.0, 20.0]]
    # (W - x2) - 1 rounds twice in float32, as mmdet evaluates it.
    x2 = np.float32(212.13866)
    flipped = box_ops.hflip(np.array([[0.0, 0.0, x2, 1.0]], np.float32), 469, "mmcv")
    assert flipped[0, 0] == (np.float32(469) - x2) - np.float32(1)


def test_crop_keeps_boxes_whose_centre_is_inside_half_open():
    boxes = np.array([[0, 0, 20, 20],      # centre (10, 10): inside
                      [80, 80, 100, 100],  # centre (90, 90): outside
                      [40, 10, 60, 30],    # centre (50, 20): on the far edge x = 50, out
                      [10, 10, 11, 11]], np.float32)
    cropped, keep = box_ops.crop(boxes, (5, 5, 50, 50))
    assert keep.tolist() == [0, 3]
    assert cropped[0].tolist() == [0.0, 0.0, 15.0, 15.0]   # clipped to x, y >= 5 and shifted
    iou = box_ops.crop_iou(boxes, (0, 0, 20, 20))
    assert iou.dtype == np.float32 and iou[0] == pytest.approx(1.0) and iou[1] == 0


def test_mask_boxes_are_pixel_extents():
    masks = np.zeros((2, 10, 12), np.uint8)
    masks[0, 2:5, 3:9] = 1
    assert box_ops.mask_boxes_xywh(masks).tolist() == [[3.0, 2.0, 6.0, 3.0], [0, 0, 0, 0]]
