"""Training transforms of SOLOv2, applied to an image, its instance masks and boxes together.

Order, as each reference's training reader has it (steps marked (*) only where the config
turns them on: configs 2 and 3):
    decode RGB -> masks -> colour distortion (*) -> random crop (*) -> multi-scale resize
    -> horizontal flip (p = 0.5) -> normalize -> CHW
  [SOLO train_pipeline: Resize, RandomFlip, Normalize, Pad; PD0.5 solov2_light_reader.yml:
  ColorDistort, RandomCrop(is_mask_crop), ResizeImage, RandomFlipImage, NormalizeImage,
  Permute; PD2 _base_/solov2_light_reader.yml: RandomDistort, RandomCrop, RandomResize,
  RandomFlip, NormalizeImage, Permute.] Padding to a multiple of 32 and target generation are
batch steps (tools/data/targets.py).

Each step computes what the reference op of the same name computes from the same random
draws, in the same dtypes: boxes follow each reference's pixel convention
(tools/data/boxes.py), PaddleDetection resizes with cv2.resize(fx=fy=scale) where SOLO gives
the output size, and each reference normalises in its own order of operations. Random draws
come from the ``rng`` (numpy RandomState) each function is given, in the order the
reference draws them from numpy's global stream. What still differs is listed in README.md,
"Where training differs from the references".
"""

import cv2
import numpy as np

from . import boxes as box_ops
from .preprocess import resize_scale

# ----------------------------------------------------------------- colour distortion
# PaddleDetection's ColorDistort (0.5, random_apply=True; RandomDistort in 2.x has the same
# defaults): brightness, contrast, saturation and hue each run with probability 0.5, in a
# random order, on float pixels that are not clipped afterwards.
BRIGHTNESS = (0.5, 1.5)   # added to every pixel (an offset of under 2 grey levels)
CONTRAST = (0.5, 1.5)     # multiplies every pixel
SATURATION = (0.5, 1.5)   # blend factor between the image and its grey version
HUE = (-18, 18)           # rotation in YIQ space by delta * pi radians
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_YIQ2RGB = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


# Each distortion gets the image as float32, as the reference casts it first.
def _brightness(img, delta):
    return img + np.float32(delta)


def _contrast(img, delta):
    return img * np.float32(delta)


def _saturation(img, delta):
    grey = (img * _GREY).sum(axis=2, keepdims=True)
    return img * np.float32(delta) + grey * np.float32(1.0 - delta)


def _hue(img, delta):
    # The reference draws delta in degrees' range but uses it as a multiple of pi, which
    # makes the rotation angle effectively uniform; kept as it was trained. The float64
    # matrix makes the result float64 there too, and the next step casts it back.
    u, w = np.cos(delta * np.pi), np.sin(delta * np.pi)
    rotate = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
    return np.dot(img, np.dot(np.dot(_YIQ2RGB, rotate), _RGB2YIQ).T)


_DISTORTIONS = ((_brightness, BRIGHTNESS), (_contrast, CONTRAST),
                (_saturation, SATURATION), (_hue, HUE))


def color_distort(image, rng):
    """RGB image -> the distorted image: the input itself when no distortion was drawn
    (uint8 stays uint8 and is resized as uint8, as there), float32, or float64 when hue
    was the last one applied."""
    img = image
    for k in rng.permutation(len(_DISTORTIONS)):
        apply, (low, high) = _DISTORTIONS[k]
        if rng.uniform(0.0, 1.0) < 0.5:
            continue
        img = apply(img.astype(np.float32), rng.uniform(low, high))
    return img


# ------------------------------------------------------------------------ random crop
# PaddleDetection RandomCrop defaults (0.5 and 2.x alike): pick a minimum IoU from
# thresholds (or no crop at all), then up to 50 tries of a crop covering 0.3-1 of each side
# with aspect ratio 0.5-2; instances whose box centre leaves the crop are dropped.
CROP_THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
CROP_SCALING = (0.3, 1.0)
CROP_ASPECT = (0.5, 2.0)
CROP_ATTEMPTS = 50


def _crop_window(boxes, h, w, thresh, rng):
    """(window, cropped boxes, kept indices) of the first of CROP_ATTEMPTS draws that meets
    ``thresh`` and keeps an instance, or None."""
    for _ in range(CROP_ATTEMPTS):
        scale = rng.uniform(*CROP_SCALING)
        aspect = rng.uniform(max(CROP_ASPECT[0], scale ** 2), min(CROP_ASPECT[1], scale ** -2))
        crop_h = int(h * (scale / np.sqrt(aspect)))
        crop_w = int(w * (scale * np.sqrt(aspect)))
        if crop_h >= h or crop_w >= w:
            # Only when the side factor is exactly 1; the reference's randint(0, 0) would
            # raise there.
            continue
        y, x = rng.randint(0, h - crop_h), rng.randint(0, w - crop_w)
        window = (x, y, x + crop_w, y + crop_h)
        if box_ops.crop_iou(boxes, window).max() < thresh:
            continue
        cropped, keep = box_ops.crop(boxes, window)
        if len(keep):
            return window, cropped, keep
    return None


def random_crop(image, masks, boxes, labels, rng, style):
    """PaddleDetection's RandomCrop on the annotation boxes (x1, y1, x2, y2).

    Instances whose cropped mask is empty are dropped; they give no target in either
    reference. If that leaves none, 'ppdet2' keeps the crop without instances (2.x crops
    masks without looking at them) and 'ppdet_static' keeps the uncropped image (0.5's
    is_mask_crop drops instances whose cropped polygon is empty and returns the sample
    uncropped when none is left; an empty cropped mask stands in for an empty polygon).
    """
    if len(boxes) == 0:
        return image, masks, boxes, labels
    h, w = image.shape[:2]
    choices = list(CROP_THRESHOLDS) + [None]  # None: leave the image as it is
    for thresh in [choices[i] for i in rng.permutation(len(choices))]:
        if thresh is None:
            break
        found = _crop_window(boxes, h, w, thresh, rng)
        if found is None:
            continue
        (x0, y0, x1, y1), cropped, keep = found
        crop_masks = masks[keep, y0:y1, x0:x1]
        nonempty = crop_masks.reshape(len(keep), -1).any(axis=1)
        if not nonempty.any() and style == "ppdet_static":
            break
        return (image[y0:y1, x0:x1], crop_masks[nonempty], cropped[keep][nonempty],
                labels[keep][nonempty])
    return image, masks, boxes, labels


# -------------------------------------------------------------------- resize and flip
def train_size(h, w, short, max_size, style):
    """(new_h, new_w) for a training resize to ``short`` capped at ``max_size``, with the
    scale rule and rounding of the reference the config follows (see tools/data/preprocess.py)."""
    scale = resize_scale(h, w, short, max_size, style)
    if style == "mmcv":
        return int(h * scale + 0.5), int(w * scale + 0.5)
    return int(round(h * scale)), int(round(w * scale))  # cv2.resize(fx=fy=scale)


def resize(image, masks, boxes, short, max_size, style):
    """Image bilinear, masks nearest (mmdet Resize and PaddleDetection both), boxes scaled
    and clipped. SOLO (mmcv.imrescale) resizes to an explicit size; PaddleDetection passes
    fx=fy=scale, which OpenCV maps with the scale itself rather than the size ratio, so the
    sampled pixels differ between the two at the same output size."""
    h, w = image.shape[:2]
    scale = resize_scale(h, w, short, max_size, style)
    new_h, new_w = train_size(h, w, short, max_size, style)
    if style == "mmcv":
        def warp(a, interpolation):
            return cv2.resize(a, (new_w, new_h), interpolation=interpolation)
    else:
        def warp(a, interpolation):
            return cv2.resize(a, None, None, fx=scale, fy=scale, interpolation=interpolation)
    image = warp(image, cv2.INTER_LINEAR)
    if len(masks):
        masks = np.stack([warp(m, cv2.INTER_NEAREST) for m in masks])
    else:
        masks = np.zeros((0, new_h, new_w), np.uint8)
    return image, masks, box_ops.resize(boxes, scale, (h, w), (new_h, new_w), style)


def hflip(image, masks, boxes, style):
    return image[:, ::-1], masks[:, :, ::-1], box_ops.hflip(boxes, image.shape[1], style)


def normalize_chw(image, mean, std, style):
    """(x - mean) / std per RGB channel, then [3, H, W] float32, in the reference's order of
    operations: SOLO (mmcv.imnormalize) in float32 on 0..255 pixels; PaddleDetection scales to
    [0, 1] first (0.5: x / 255; 2.x: x * (1 / 255)), then subtracts and divides by its
    [0, 1] statistics, float64 arrays applied in place to float32 pixels."""
    if style == "mmcv":
        out = (image.astype(np.float32) - np.float32(mean)) / np.float32(std)
    else:
        # The ppdet configs write mean/std as 3-decimal literals; x / 255 of the 0..255
        # values can land an ulp away (57.12 / 255 != 0.224), rounding recovers them.
        mean01 = np.round(np.asarray(mean, np.float64) / 255.0, 12)
        std01 = np.round(np.asarray(std, np.float64) / 255.0, 12)
        out = image.astype(np.float32)
        if style == "ppdet_static":
            out = out / 255.0
        else:
            out *= 1.0 / 255.0
        out -= mean01
        out /= std01
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class TrainTransform:
    """The whole per-image pipeline for a config (see the module docstring).

    __call__(image [H, W, 3] uint8 RGB, masks [K, H, W] uint8, boxes [K, 4] COCO (x, y, w, h)
    float64, labels [K], rng) -> (image [3, h, w] float32, masks [K', h, w] uint8,
    boxes [K', 4] (x1, y1, x2, y2) in the reference's convention, labels [K'])."""

    def __init__(self, cfg, style):
        self.sizes = tuple(cfg.train_sizes)
        self.max_size = cfg.train_max_size
        self.color = cfg.train_color_distort
        self.crop = cfg.train_random_crop
        self.mean, self.std = cfg.pixel_mean, cfg.pixel_std
        self.style = style

    def __call__(self, image, masks, boxes, labels, rng):
        boxes = box_ops.from_coco(boxes, *image.shape[:2], self.style)
        if self.color:
            image = color_distort(image, rng)
        if self.crop:
            image, masks, boxes, labels = random_crop(image, masks, boxes, labels, rng,
                                                      self.style)
        short = self.sizes[rng.randint(len(self.sizes))]
        image, masks, boxes = resize(image, masks, boxes, short, self.max_size, self.style)
        if rng.uniform() < 0.5:
            image, masks, boxes = hflip(image, masks, boxes, self.style)
        return (normalize_chw(image, self.mean, self.std, self.style),
                np.ascontiguousarray(masks), boxes, labels)
