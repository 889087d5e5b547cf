"""Each training transform keeps image, masks and boxes aligned, and computes what the
reference op of the same name computes.

The test image paints instance k's pixels with grey level 50 * (k + 1), so after any
geometric transform the image under mask k must still read 50 * (k + 1). The last tests
run PaddleDetection's own ops (where ppdet is installed) on a real photo with the same
random draws; tests/tools/data/test_targets_reference.py checks the whole pipelines.
"""

import cv2
import numpy as np
import pytest

from config import load_config
from tools.data import boxes as box_ops
from tools.data.transforms import (
    TrainTransform,
    _hue,
    _saturation,
    color_distort,
    hflip,
    normalize_chw,
    random_crop,
    resize,
    train_size,
)
from tools.dev.make_target_goldens import reference_photos

STYLES = ("mmcv", "ppdet_static", "ppdet2")


def painted(h=120, w=160):
    masks = np.zeros((3, h, w), np.uint8)
    masks[0, 10:50, 10:60] = 1
    masks[1, 60:110, 30:70] = 1
    masks[2, 20:100, 100:150] = 1
    image = np.zeros((h, w, 3), np.uint8)
    for k, m in enumerate(masks):
        image[m.astype(bool)] = 50 * (k + 1)
    return image, masks, np.array([0, 1, 2])


def boxes_of(masks, style):
    """The annotation boxes a COCO file would hold for ``masks``, loaded as ``style``."""
    return box_ops.from_coco(box_ops.mask_boxes_xywh(masks), *masks.shape[1:], style)


def assert_aligned(image, masks, labels, boxes=None, style=None):
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    assert masks.shape[1:] == image.shape[:2] and len(masks) == len(labels)
    for m, label in zip(masks, labels):
        assert m.any()
        values = image[m.astype(bool)][:, 0]
        # Nearest-neighbour masks against bilinear pixels: the border may blend.
        assert np.mean(np.abs(values.astype(float) - 50 * (label + 1)) < 1) > 0.9
    if boxes is not None:
        # The boxes still frame their masks, to within the resize's rounding.
        assert len(boxes) == len(masks)
        frame = boxes_of(masks, style)
        np.testing.assert_allclose(boxes, frame, atol=1.5)


@pytest.mark.parametrize("style", STYLES)
def test_hflip(style):
    image, masks, labels = painted()
    boxes = boxes_of(masks, style)
    out = hflip(image, masks, boxes, style)
    assert_aligned(out[0], out[1], labels, out[2], style)
    assert np.array_equal(out[1][0][:, ::-1], masks[0])
    # Instance 0 spans columns 10..59 of 160. mmdet and PaddleDetection 0.5 store it as
    # x 10..59 and flip to 160 - 59 - 1 = 100 .. 149; 2.x as 10..60 (exclusive) -> 100..150.
    assert out[2][0, [0, 2]].tolist() == ([100.0, 150.0] if style == "ppdet2"
                                          else [100.0, 149.0])


@pytest.mark.parametrize("style, short, expected", [
    ("mmcv", 96, (96, 128)),            # 120x160 -> scale 0.8
    ("ppdet_static", 100, (100, 133)),  # scale 0.8333: 133.33 rounds to 133
    ("ppdet2", 100, (100, 133)),
    ("mmcv", 300, (240, 320)),          # long side capped at 320
])
def test_resize_sizes_and_alignment(style, short, expected):
    image, masks, labels = painted()
    assert train_size(120, 160, short, 320, style) == expected
    out = resize(image, masks, boxes_of(masks, style), short, 320, style)
    assert out[0].shape[:2] == out[1].shape[1:] == expected
    assert_aligned(out[0], out[1], labels, out[2], style)


def test_resize_interpolates_as_each_reference():
    # SOLO passes the output size, PaddleDetection the scale: OpenCV then samples other
    # source pixels, so the two differ at the same output size (100 x 133 here).
    image, masks, _ = painted()
    noise = np.random.RandomState(0).randint(0, 255, image.shape).astype(np.uint8)
    boxes = boxes_of(masks, "ppdet2")
    ours = resize(noise, masks, boxes, 100, 320, "ppdet2")[0]
    by_scale = cv2.resize(noise, None, None, fx=100 / 120, fy=100 / 120,
                          interpolation=cv2.INTER_LINEAR)
    by_size = cv2.resize(noise, (133, 100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(ours, by_scale)
    assert (by_size != by_scale).any()


def test_resize_without_instances():
    image = np.zeros((40, 60, 3), np.uint8)
    out = resize(image, np.zeros((0, 40, 60), np.uint8), np.zeros((0, 4), np.float32), 20, 100,
                 "mmcv")
    assert out[1].shape == (0, 20, 30) and out[2].shape == (0, 4)


@pytest.mark.parametrize("style", ["ppdet_static", "ppdet2"])
def test_random_crop_keeps_alignment_and_drops_instances_outside(style):
    image, masks, labels = painted()
    changed = 0
    for seed in range(40):
        boxes = boxes_of(masks, style)
        out = random_crop(image, masks, boxes, labels, np.random.RandomState(seed), style)
        assert_aligned(out[0], out[1], out[3], out[2], style)
        if out[0].shape != image.shape:
            changed += 1
            h, w = out[0].shape[:2]
            assert h >= 0.3 * 120 * 0.7 and w >= 0.3 * 160 * 0.7
    # With 6 IoU thresholds and 'no crop' drawn uniformly, most draws crop.
    assert changed > 20


def test_random_crop_with_only_empty_masks_left():
    # The box keeps the instance (its centre is in most crops) but its mask lies in a
    # corner most crops cut away. From the same draws, 2.x keeps such a crop without
    # instances; 0.5 (is_mask_crop) returns the image uncropped.
    image = np.zeros((100, 100, 3), np.uint8)
    masks = np.zeros((1, 100, 100), np.uint8)
    masks[0, 0:2, 0:2] = 1
    boxes, labels = np.array([[0.0, 0.0, 100.0, 100.0]], np.float32), np.array([0])
    emptied = 0
    for seed in range(30):
        two = random_crop(image, masks, boxes, labels, np.random.RandomState(seed), "ppdet2")
        static = random_crop(image, masks, boxes, labels, np.random.RandomState(seed),
                             "ppdet_static")
        if len(two[1]) == 0:
            emptied += 1
            assert two[0].shape != image.shape and len(two[2]) == len(two[3]) == 0
            assert static[0] is image and static[1] is masks
        else:
            for a, b in zip(two, static):
                np.testing.assert_array_equal(a, b)
    assert emptied > 5


def test_random_crop_without_instances_is_identity():
    image = np.zeros((40, 60, 3), np.uint8)
    masks = np.zeros((0, 40, 60), np.uint8)
    boxes = np.zeros((0, 4), np.float32)
    out = random_crop(image, masks, boxes, np.zeros(0), np.random.RandomState(0), "ppdet2")
    assert out[0] is image and out[1] is masks and out[2] is boxes


def test_color_distort_changes_only_pixels_and_keeps_the_references_dtypes():
    image, _, _ = painted()
    dtypes = set()
    for seed in range(12):
        out = color_distort(image, np.random.RandomState(seed))
        assert out.shape == image.shape
        # Reproducible from the generator alone.
        np.testing.assert_array_equal(out, color_distort(image, np.random.RandomState(seed)))
        dtypes.add(out.dtype)
        if out.dtype == np.uint8:  # nothing drawn: the input itself, resized as uint8
            assert out is image
    # float32 after brightness/contrast/saturation, float64 when hue came last.
    assert dtypes == {np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64)}


def test_color_distort_pieces():
    rgb = np.array([[[200.0, 100.0, 50.0]]], np.float32)
    grey = (rgb * np.array([0.299, 0.587, 0.114])).sum()
    np.testing.assert_allclose(_saturation(rgb, 0.0), np.full((1, 1, 3), grey), rtol=1e-5)
    np.testing.assert_allclose(_saturation(rgb, 1.0), rgb, rtol=1e-6)
    # A full turn (delta = 2: 2*pi) only leaves the YIQ round-trip error (< 1%).
    np.testing.assert_allclose(_hue(rgb, 2.0), rgb, rtol=0.01)


@pytest.mark.parametrize("style", STYLES)
def test_normalize_chw(style):
    image = np.full((2, 3, 3), 128, np.uint8)
    out = normalize_chw(image, (128, 64, 0), (1, 2, 4), style)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [0, 32, 32], rtol=1e-5, atol=1e-5)


def test_normalize_follows_each_references_arithmetic():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    mmcv = (pixels.astype(np.float32) - np.float32(mean)) / np.float32(std)
    np.testing.assert_array_equal(normalize_chw(pixels, mean, std, "mmcv"),
                                  mmcv.transpose(2, 0, 1))
    m01, s01 = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    static = pixels.astype(np.float32) / 255.0
    static -= m01
    static /= s01
    np.testing.assert_array_equal(normalize_chw(pixels, mean, std, "ppdet_static"),
                                  static.transpose(2, 0, 1))
    two = pixels.astype(np.float32)
    two *= 1.0 / 255.0
    two -= m01
    two /= s01
    np.testing.assert_array_equal(normalize_chw(pixels, mean, std, "ppdet2"),
                                  two.transpose(2, 0, 1))
    assert not np.array_equal(static, two)  # x / 255 and x * (1 / 255) round differently


@pytest.mark.parametrize("config, style", [(2, "ppdet_static"), (3, "ppdet2"), (1, "mmcv")])
def test_train_transform_output(config, style):
    cfg = load_config(config, ["train_sizes=(64, 96)", "train_max_size=200"])
    transform = TrainTransform(cfg, style)
    image, masks, labels = painted()
    xywh = box_ops.mask_boxes_xywh(masks)
    for seed in range(5):
        chw, out_masks, out_boxes, out_labels = transform(image, masks, xywh, labels,
                                                          np.random.RandomState(seed))
        assert chw.dtype == np.float32 and chw.shape[0] == 3
        assert min(chw.shape[1:]) in (64, 96) or max(chw.shape[1:]) == 200
        assert out_masks.shape[1:] == chw.shape[1:] and len(out_masks) == len(out_labels)
        assert out_boxes.shape == (len(out_labels), 4)
        assert len(out_labels) >= (0 if style == "ppdet2" else 1)


# ------------------------------------------------------- PaddleDetection's own ops
def ppdet_sample(rgb, masks, boxes, labels):
    return {"image": rgb.copy(), "gt_segm": masks.copy(), "gt_bbox": boxes.copy(),
            "gt_class": labels[:, None].astype(np.int32), "gt_poly": [],
            "im_shape": np.array(rgb.shape[:2], np.float32),
            "scale_factor": np.array([1.0, 1.0], np.float32)}


@pytest.mark.parametrize("seed", range(8))
def test_each_step_is_the_paddledetection_op(seed):
    """RandomDistort, RandomCrop, Resize, RandomFlip and NormalizeImage of ppdet 2.6, one
    at a time, from the same random state as ours."""
    ops = pytest.importorskip("ppdet.data.transform.operators")
    rgb, masks, xywh, labels = reference_photos()[seed % 3]
    boxes = box_ops.from_coco(xywh, *rgb.shape[:2], "ppdet2")

    np.random.seed(seed)
    distorted = ops.RandomDistort()(ppdet_sample(rgb, masks, boxes, labels))["image"]
    ours = color_distort(rgb, np.random.RandomState(seed))
    assert ours.dtype == distorted.dtype
    np.testing.assert_array_equal(ours, distorted)

    np.random.seed(seed)
    ref = ops.RandomCrop()(ppdet_sample(rgb, masks, boxes, labels))
    image, out_masks, out_boxes, out_labels = random_crop(rgb, masks, boxes, labels,
                                                          np.random.RandomState(seed), "ppdet2")
    keep = ref["gt_segm"].reshape(len(ref["gt_segm"]), -1).any(axis=1)  # ours drops empties
    np.testing.assert_array_equal(image, ref["image"])
    np.testing.assert_array_equal(out_masks, ref["gt_segm"][keep])
    np.testing.assert_array_equal(out_boxes, ref["gt_bbox"][keep])
    np.testing.assert_array_equal(out_labels, ref["gt_class"][keep, 0])

    short = (352, 417, 512, 600)[seed % 4]
    ref = ops.Resize([short, 852], keep_ratio=True, interp=1)(
        ppdet_sample(rgb, masks, boxes, labels))
    image, out_masks, out_boxes = resize(rgb, masks, boxes, short, 852, "ppdet2")
    np.testing.assert_array_equal(image.astype(np.float32), ref["image"])
    np.testing.assert_array_equal(out_masks, ref["gt_segm"])
    np.testing.assert_array_equal(out_boxes, ref["gt_bbox"])

    ref = ops.RandomFlip(1.1)(ppdet_sample(rgb, masks, boxes, labels))
    image, out_masks, out_boxes = hflip(rgb, masks, boxes, "ppdet2")
    np.testing.assert_array_equal(image, ref["image"])
    np.testing.assert_array_equal(out_masks, ref["gt_segm"])
    np.testing.assert_array_equal(out_boxes, ref["gt_bbox"])

    ref = ops.NormalizeImage([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(
        ppdet_sample(distorted, masks, boxes, labels))["image"]
    np.testing.assert_array_equal(
        normalize_chw(distorted, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "ppdet2"),
        ref.transpose(2, 0, 1))
