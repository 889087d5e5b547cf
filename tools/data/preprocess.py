"""Reading images and turning them into network input, exactly as each reference did.

Published weights reproduce their AP only with the preprocessing they were evaluated with.
The three references differ in small ways, so each is implemented as it was:

'mmcv' (SOLO, mmdet 1.0 test pipeline: Resize(keep_ratio) -> Normalize -> Pad(32))
    scale = min(max_size / long side, short / short side); the output size is
    (int(w * scale + 0.5), int(h * scale + 0.5)) and cv2 resizes uint8 pixels to exactly
    that size; then (x - mean) / std in float32. Crop size = the resized size.
'ppdet_static' (PaddleDetection 0.5: ResizeImage -> NormalizeImage -> PadBatch(32))
    scale = short / short side, replaced by max_size / long side when round(scale * long)
    exceeds max_size; cv2.resize(fx=fy=scale) on uint8; then x / 255, - mean, / std with
    mean and std in [0, 1] units. Crop size = int(float32(scale * h)), int(... * w)),
    which PaddleDetection recorded in im_info and the head crops with.
'ppdet2' (PaddleDetection 2.x: NormalizeImage -> Resize(keep_ratio) -> PadBatch(32))
    normalise first (x * (1/255), - mean, / std), then cv2.resize(fx=fy=scale) on the
    float image with scale = min(short / short side, max_size / long side). Crop size as
    in 'ppdet_static' (im_shape = scale * h, w, cast to int in the head).
"""

import os

import cv2
import numpy as np

from config.checks import PREPROCESS_STYLES as STYLES

from ..errors import ConfigError, MissingInputError, UserError

# The thinnest an image may be once resized to the test or training size: 8 px, the stride
# of the finest level SOLOv2 predicts on (``strides[0]`` in every config); a thinner image
# is less than one cell of that level's feature map across, and below 1 px OpenCV cannot
# resize it at all. The random training crop can make an image at most twice as
# elongated (tools/data/transforms.py CROP_ASPECT), which keeps a crop above 4 px.
MIN_RESIZED_SIDE = 8


class ImageReadError(UserError):
    """A file that is missing, empty or not a decodable image; readers skip it."""


class ImageSizeError(ImageReadError):
    """An image too elongated for the resize: its short side would shrink below
    MIN_RESIZED_SIDE. Skipped like an unreadable file."""


def read_image(path):
    """Decode ``path`` to an RGB uint8 array [H, W, 3].

    Grayscale becomes three equal channels, an alpha channel is dropped, 16-bit images are
    scaled to 8 bits and the EXIF orientation is applied -- what cv2.imread did for every
    reference implementation.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror})") from None
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_scale(h, w, short, max_size, style):
    """The single scale factor each reference applies to an h x w image."""
    if style == "ppdet_static":
        scale = float(short) / float(min(h, w))
        if np.round(scale * max(h, w)) > max_size:
            scale = float(max_size) / float(max(h, w))
        return scale
    return min(float(max_size) / max(h, w), float(short) / min(h, w))


def check_resizable(h, w, size, style, source="image"):
    """Raise ImageSizeError when an h x w image resized to ``size`` (short side, long-side
    cap) would be thinner than MIN_RESIZED_SIDE; ``source`` names it in the message."""
    short, max_size = size
    side = resize_scale(h, w, short, max_size, style) * min(h, w)
    # Only the long-side cap makes an image thinner than the short side asked for, and that
    # is what is refused; a short side below MIN_RESIZED_SIDE asked for directly (configs
    # cannot, config/checks.py) is taken as given. The tolerance absorbs float rounding.
    if not side >= min(MIN_RESIZED_SIDE, short) * (1 - 1e-9):
        raise ImageSizeError(
            f"{source}: {w}x{h} pixels is too elongated for the resize to {short} / "
            f"{max_size}: its short side would become {side:.3g} px, and at least "
            f"{MIN_RESIZED_SIDE} px are needed (long side at most "
            f"{max_size / MIN_RESIZED_SIDE:g} times the short side)")


def preprocess(image, size, mean, std, style, source="image"):
    """RGB uint8 [H, W, 3] -> (float32 [3, h, w] network input, crop (h, w), original (H, W)).

    size: (short side, long-side cap). mean/std: per-channel, on 0..255 pixels.
    The result is not padded; see :func:`pad_batch`. Raises ImageSizeError (naming
    ``source``) for an image too elongated to resize (see MIN_RESIZED_SIDE).
    """
    if style not in STYLES:
        raise ConfigError(f"unknown preprocessing style {style!r}; choose one of {STYLES}")
    h, w = image.shape[:2]
    check_resizable(h, w, size, style, source)
    short, max_size = size
    scale = resize_scale(h, w, short, max_size, style)
    if style == "mmcv":
        new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out = (resized.astype(np.float32) - np.float32(mean)) / np.float32(std)
        crop = (new_h, new_w)
    else:
        mean01 = np.array(mean, np.float64) / 255.0
        std01 = np.array(std, np.float64) / 255.0
        if style == "ppdet_static":
            resized = cv2.resize(image, None, None, fx=scale, fy=scale,
                                 interpolation=cv2.INTER_LINEAR)
            out = resized.astype(np.float32) / 255.0
            out -= mean01
            out /= std01
        else:
            out = image.astype(np.float32)
            out *= 1.0 / 255.0
            out -= mean01
            out /= std01
            out = cv2.resize(out, None, None, fx=scale, fy=scale,
                             interpolation=cv2.INTER_LINEAR)
        crop = (int(np.float32(scale * h)), int(np.float32(scale * w)))
    return np.ascontiguousarray(out.transpose(2, 0, 1)), crop, (h, w)


def preprocess_style(cfg, meta=None):
    """The preprocessing style to use: the config's explicit choice, else the style a
    weight file records in its ``meta`` (see tools.weights.files), else the config's
    native style -- the resize rule of the reference the config follows."""
    if cfg.preprocess != "auto":
        return cfg.preprocess
    return (meta or {}).get("preprocess", cfg.native_preprocess)


def padded_shape(h, w, stride=32):
    return -(-h // stride) * stride, -(-w // stride) * stride


def pad_batch(images, stride=32):
    """Stack [3, h, w] arrays into [N, 3, H, W], zero-padded at the bottom/right to a
    common multiple of ``stride`` (mmdet Pad(size_divisor) / PaddleDetection PadBatch)."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    h, w = padded_shape(h, w, stride)
    batch = np.zeros((len(images), 3, h, w), np.float32)
    for i, im in enumerate(images):
        batch[i, :, :im.shape[1], :im.shape[2]] = im
    return batch


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def list_images(spec):
    """Files named by ``spec``: a file, a folder (its images, sorted) or a glob pattern.
    Raises MissingInputError when that names no file: a folder without images (the
    extensions looked for are listed), a glob that matches no file, a path that does not
    exist."""
    import glob

    if os.path.isdir(spec):
        names = sorted(os.listdir(spec))
        found = [os.path.join(spec, n) for n in names
                 if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        if not found:
            raise MissingInputError(
                f"the folder {spec} holds no images (looked for {' '.join(IMAGE_EXTENSIONS)}, "
                "in any case)")
        return found
    if os.path.isfile(spec):
        return [spec]
    if not any(c in spec for c in "*?["):
        raise MissingInputError(f"{spec} does not exist; give an image file, a folder or a "
                                "glob pattern")
    matches = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
    if not matches:
        raise MissingInputError(f"no images match {spec!r}: the pattern matches no file")
    return matches
