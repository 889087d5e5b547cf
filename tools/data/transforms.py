"""Training transforms of SOLOv2, applied to an image and its instance masks together.

Order [PD0.5 solov2_light_reader.yml; SOLO train_pipeline has the steps without (*)]:
    decode RGB -> masks -> colour distortion (*) -> random crop (*) -> multi-scale resize
    -> horizontal flip (p = 0.5) -> normalize -> CHW
Padding to a multiple of 32 and target generation are batch steps (tools/data/targets.py).
Every function takes and returns (image [H, W, 3], masks [K, H, W] uint8, labels [K]) and
draws its randomness from the ``rng`` (numpy RandomState) it is given.
"""

import cv2
import numpy as np

from model.postprocess import masks_to_boxes

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


def _brightness(img, delta):
    return img + np.float32(delta)


def _contrast(img, delta):
    return img * np.float32(delta)


def _saturation(img, delta):
    grey = (img * _GREY).sum(axis=2, keepdims=True)
    return img * np.float32(delta) + grey * np.float32(1.0 - delta)


def _hue(img, delta):
    # The reference draws delta in degrees' range but uses it as a multiple of pi, which
    # makes the rotation angle effectively uniform; kept as it was trained.
    u, w = np.cos(delta * np.pi), np.sin(delta * np.pi)
    rotate = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
    matrix = (_YIQ2RGB @ rotate @ _RGB2YIQ).T.astype(np.float32)
    return img @ matrix


_DISTORTIONS = ((_brightness, BRIGHTNESS), (_contrast, CONTRAST),
                (_saturation, SATURATION), (_hue, HUE))


def color_distort(image, masks, labels, rng):
    img = image.astype(np.float32)
    for k in rng.permutation(len(_DISTORTIONS)):
        apply, (low, high) = _DISTORTIONS[k]
        if rng.uniform(0.0, 1.0) < 0.5:
            continue
        img = apply(img, rng.uniform(low, high))
    return img, masks, labels


# ------------------------------------------------------------------------ random crop
# PaddleDetection RandomCrop(is_mask_crop=True) defaults: pick a minimum IoU from
# thresholds (or no crop at all), then up to 50 tries of a crop covering 0.3-1 of each side
# with aspect ratio 0.5-2; instances whose box centre leaves the crop are dropped.
CROP_THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
CROP_SCALING = (0.3, 1.0)
CROP_ASPECT = (0.5, 2.0)
CROP_ATTEMPTS = 50


def _iou(boxes, crop):
    lt = np.maximum(boxes[:, :2], crop[:2])
    rb = np.minimum(boxes[:, 2:], crop[2:])
    inter = np.prod(rb - lt, axis=1) * (lt < rb).all(axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + np.prod(crop[2:] - crop[:2]) - inter + 1e-10)


def _kept_by_crop(boxes, crop):
    """Instances whose box centre lies in the crop and whose clipped box is not empty."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((crop[:2] <= centres) & (centres < crop[2:])).all(axis=1)
    clipped_lt = np.maximum(boxes[:, :2], crop[:2])
    clipped_rb = np.minimum(boxes[:, 2:], crop[2:])
    return np.flatnonzero(inside & (clipped_lt < clipped_rb).all(axis=1))


def random_crop(image, masks, labels, rng):
    if len(masks) == 0:
        return image, masks, labels
    h, w = image.shape[:2]
    boxes = masks_to_boxes(masks)
    choices = list(CROP_THRESHOLDS) + [None]  # None: leave the image as it is
    for thresh in [choices[i] for i in rng.permutation(len(choices))]:
        if thresh is None:
            return image, masks, labels
        for _ in range(CROP_ATTEMPTS):
            scale = rng.uniform(*CROP_SCALING)
            aspect = rng.uniform(max(CROP_ASPECT[0], scale ** 2), min(CROP_ASPECT[1], scale ** -2))
            crop_h = int(h * scale / np.sqrt(aspect))
            crop_w = int(w * scale * np.sqrt(aspect))
            if crop_h >= h or crop_w >= w:
                continue  # the reference's randint(0, h - crop_h) needs a smaller crop
            y, x = rng.randint(0, h - crop_h), rng.randint(0, w - crop_w)
            crop = np.array([x, y, x + crop_w, y + crop_h], np.float32)
            if _iou(boxes, crop).max() < thresh:
                continue
            keep = _kept_by_crop(boxes, crop)
            if len(keep) == 0:
                continue
            cropped = masks[keep, y:y + crop_h, x:x + crop_w]
            nonempty = cropped.reshape(len(keep), -1).any(axis=1)
            if not nonempty.any():
                continue
            return (image[y:y + crop_h, x:x + crop_w], cropped[nonempty],
                    labels[keep][nonempty])
    return image, masks, labels


# -------------------------------------------------------------------- resize and flip
def train_size(h, w, short, max_size, style):
    """(new_h, new_w) for a training resize to ``short`` capped at ``max_size``, with the
    scale rule and rounding of the reference the config follows (see tools/data/preprocess.py)."""
    scale = resize_scale(h, w, short, max_size, style)
    if style == "mmcv":
        return int(h * scale + 0.5), int(w * scale + 0.5)
    return int(round(h * scale)), int(round(w * scale))  # cv2.resize(fx=fy=scale)


def resize(image, masks, labels, size):
    """Image bilinear, masks nearest (mmdet Resize and PaddleDetection both)."""
    h, w = size
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if len(masks):
        masks = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
                          for m in masks])
    else:
        masks = np.zeros((0, h, w), np.uint8)
    return image, masks, labels


def hflip(image, masks, labels):
    return image[:, ::-1], masks[:, :, ::-1], labels


def normalize_chw(image, mean, std):
    """(x - mean) / std per RGB channel on 0..255 pixels, then [3, H, W] float32."""
    out = (image.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class TrainTransform:
    """The whole per-image pipeline for a config (see the module docstring)."""

    def __init__(self, cfg, style):
        self.sizes = tuple(cfg.train_sizes)
        self.max_size = cfg.train_max_size
        self.color = cfg.train_color_distort
        self.crop = cfg.train_random_crop
        self.mean, self.std = cfg.pixel_mean, cfg.pixel_std
        self.style = style

    def __call__(self, image, masks, labels, rng):
        if self.color:
            image, masks, labels = color_distort(image, masks, labels, rng)
        if self.crop:
            image, masks, labels = random_crop(image, masks, labels, rng)
        short = self.sizes[rng.randint(len(self.sizes))]
        size = train_size(*image.shape[:2], short, self.max_size, self.style)
        image, masks, labels = resize(image, masks, labels, size)
        if rng.uniform() < 0.5:
            image, masks, labels = hflip(image, masks, labels)
        return normalize_chw(image, self.mean, self.std), np.ascontiguousarray(masks), labels
