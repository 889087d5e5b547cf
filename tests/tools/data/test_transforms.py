"""Each training transform keeps image and masks aligned.

The test image paints instance k's pixels with grey level 50 * (k + 1), so after any
geometric transform the image under mask k must still read 50 * (k + 1).
"""

import numpy as np
import pytest

from config import load_config
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


def painted(h=120, w=160):
    masks = np.zeros((3, h, w), np.uint8)
    masks[0, 10:50, 10:60] = 1
    masks[1, 60:110, 30:70] = 1
    masks[2, 20:100, 100:150] = 1
    image = np.zeros((h, w, 3), np.uint8)
    for k, m in enumerate(masks):
        image[m.astype(bool)] = 50 * (k + 1)
    return image, masks, np.array([0, 1, 2])


def assert_aligned(image, masks, labels):
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    assert masks.shape[1:] == image.shape[:2] and len(masks) == len(labels)
    for m, label in zip(masks, labels):
        assert m.any()
        values = image[m.astype(bool)][:, 0]
        # Nearest-neighbour masks against bilinear pixels: the border may blend.
        assert np.mean(np.abs(values.astype(float) - 50 * (label + 1)) < 1) > 0.9


def test_hflip():
    image, masks, labels = painted()
    out = hflip(image, masks, labels)
    assert_aligned(*out)
    assert np.array_equal(out[1][0][:, ::-1], masks[0])


@pytest.mark.parametrize("style, short, expected", [
    ("mmcv", 96, (96, 128)),            # 120x160 -> scale 0.8
    ("ppdet_static", 100, (100, 133)),  # scale 0.8333: 133.33 rounds to 133
    ("mmcv", 300, (240, 320)),          # long side capped at 320
])
def test_resize_sizes_and_alignment(style, short, expected):
    image, masks, labels = painted()
    size = train_size(120, 160, short, 320, style)
    assert size == expected
    out = resize(image, masks, labels, size)
    assert out[0].shape[:2] == expected
    assert_aligned(*out)


def test_resize_without_instances():
    image = np.zeros((40, 60, 3), np.uint8)
    out = resize(image, np.zeros((0, 40, 60), np.uint8), np.zeros(0), (20, 30))
    assert out[1].shape == (0, 20, 30)


def test_random_crop_keeps_alignment_and_drops_instances_outside():
    image, masks, labels = painted()
    changed = 0
    for seed in range(40):
        out = random_crop(image, masks, labels, np.random.RandomState(seed))
        assert_aligned(*out)
        if out[0].shape != image.shape:
            changed += 1
            h, w = out[0].shape[:2]
            assert h >= 0.3 * 120 * 0.7 and w >= 0.3 * 160 * 0.7
    # With 6 IoU thresholds and 'no crop' drawn uniformly, most draws crop.
    assert changed > 20


def test_random_crop_without_instances_is_identity():
    image = np.zeros((40, 60, 3), np.uint8)
    masks = np.zeros((0, 40, 60), np.uint8)
    out = random_crop(image, masks, np.zeros(0), np.random.RandomState(0))
    assert out[0] is image and out[1] is masks


def test_color_distort_changes_only_pixels():
    image, masks, labels = painted()
    out, out_masks, out_labels = color_distort(image, masks, labels, np.random.RandomState(3))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out_masks is masks and out_labels is labels
    # Reproducible from the generator alone.
    again = color_distort(image, masks, labels, np.random.RandomState(3))[0]
    assert np.array_equal(out, again)


def test_color_distort_pieces():
    rgb = np.array([[[200.0, 100.0, 50.0]]], np.float32)
    grey = (rgb * np.array([0.299, 0.587, 0.114])).sum()
    np.testing.assert_allclose(_saturation(rgb, 0.0), np.full((1, 1, 3), grey), rtol=1e-5)
    np.testing.assert_allclose(_saturation(rgb, 1.0), rgb, rtol=1e-6)
    # A full turn (delta = 2: 2*pi) only leaves the YIQ round-trip error (< 1%).
    np.testing.assert_allclose(_hue(rgb, 2.0), rgb, rtol=0.01)


def test_normalize_chw():
    image = np.full((2, 3, 3), 128, np.uint8)
    out = normalize_chw(image, (128, 64, 0), (1, 2, 4))
    assert out.shape == (3, 2, 3)
    np.testing.assert_allclose(out[:, 0, 0], [0, 32, 32])


def test_train_transform_output():
    cfg = load_config(2, ["train_sizes=(64, 96)", "train_max_size=200"])
    transform = TrainTransform(cfg, "ppdet_static")
    image, masks, labels = painted()
    for seed in range(5):
        chw, out_masks, out_labels = transform(image, masks, labels, np.random.RandomState(seed))
        assert chw.dtype == np.float32 and chw.shape[0] == 3
        assert min(chw.shape[1:]) in (64, 96) or max(chw.shape[1:]) == 200
        assert out_masks.shape[1:] == chw.shape[1:] and len(out_masks) == len(out_labels) >= 1
