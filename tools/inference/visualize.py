"""Drawing predicted instances: translucent masks, outlines, class names and scores.

A mask is drawn inside its bounding region only: on an 8000 x 6000 photo with 100
detections, working on whole-image masks cost most of the run's time (every blend and
outline scanned 48 million pixels per instance) for the same pixels.
"""

import colorsys
import os

import cv2
import numpy as np

from ..files import write_bytes

# A mask's region is blended this many rows at a time, so the blended copy stays small even
# for a mask as large as the photo.
BLEND_ROWS = 512


def class_color(label):
    """The RGB colour of class ``label``: the same in every image and every video frame, so
    a class keeps its colour from one to the next. Hues step by the golden ratio, so
    neighbouring labels differ clearly."""
    hue = (0.1 + int(label) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return (int(255 * r), int(255 * g), int(255 * b))


def instance_colors(labels):
    """The colour of each instance: its class's (:func:`class_color`)."""
    return [class_color(label) for label in labels]


def draw_instances(image, result, class_names, thresh, alpha=0.5):
    """RGB uint8 [H, W, 3] + a post-processing result -> a new RGB image with every
    detection scoring at least ``thresh`` drawn in its class's colour; the best-scoring
    instance is drawn last.

    Each mask is blended and outlined within its bounding region (found from the mask
    itself, so any backend's result draws the same); the pixels are those of blending and
    outlining the whole-image mask."""
    canvas = image.copy()
    keep = [i for i in range(len(result["scores"])) if result["scores"][i] >= thresh]
    colors = instance_colors([result["labels"][i] for i in keep])
    for color, i in reversed(list(zip(colors, keep))):
        region = mask_region(result["masks"][i])
        if region is None:
            continue
        x0, y0, x1, y1 = region
        mask = result["masks"][i][y0:y1, x0:x1]
        _blend(canvas[y0:y1, x0:x1], mask, color, alpha)
        # cv2 treats everything outside the image it is given as background, and the mask
        # is empty outside its region: the same contours as on the whole mask, moved.
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
        cv2.drawContours(canvas, contours, -1, color, 2)
    for color, i in zip(colors, keep):
        x0, y0 = result["boxes"][i][:2]
        label = f"{class_names[result['labels'][i]]} {result['scores'][i]:.2f}"
        _draw_label(canvas, label, int(x0), int(y0), color)
    return canvas


def mask_region(mask):
    """(x0, y0, x1, y1), exclusive ends, of the pixels set in a [H, W] bool mask, or None
    for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _blend(region, mask, color, alpha):
    """region (a view of the canvas) = region * (1 - alpha) + color * alpha where ``mask``,
    in float32 and truncated back to uint8, a band of rows at a time.

    A blended value depends only on the pixel's own value in that channel, so a 256-entry
    table per channel, made with the same float32 steps, gives the same bytes as blending
    the pixels themselves, without gathering them into float copies (which took most of
    the drawing time on large photos)."""
    levels = np.arange(256, dtype=np.float32)[:, None]
    table = (levels * (1 - alpha) + np.float32(color) * alpha).astype(np.uint8)
    table = table.reshape(256, 1, 3)  # cv2.LUT: one column per channel
    for top in range(0, len(mask), BLEND_ROWS):
        band = region[top:top + BLEND_ROWS]
        inside = mask[top:top + BLEND_ROWS]
        blended = cv2.LUT(band, table)
        # cv2.copyTo writes into the canvas view it is given, many times faster than
        # np.copyto(where=); should it ever answer with a new array instead, use numpy.
        if not np.shares_memory(cv2.copyTo(blended, inside.view(np.uint8), band), band):
            np.copyto(band, blended, where=inside[:, :, None])


def _draw_label(canvas, text, x, y, color):
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    h, w = canvas.shape[:2]
    x = min(max(x, 0), max(w - tw - 2, 0))
    top = y - th - base - 2
    if top < 0:  # no room above the object: put the label inside it
        top = min(y, max(h - th - base - 2, 0))
    cv2.rectangle(canvas, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    cv2.putText(canvas, text, (x + 1, top + th + 1), font, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def drawn_path(path):
    """Where :func:`save_image` writes an image meant for ``path``: ``path`` itself, or the
    same name with .png when cv2 has no encoder for its extension."""
    try:
        writable = cv2.haveImageWriter(path)
    except cv2.error:  # no extension at all
        writable = False
    return path if writable else os.path.splitext(path)[0] + ".png"


def save_image(path, image):
    """Write an RGB image at ``drawn_path(path)`` and return that path. The file is encoded
    in memory and renamed into place (tools.files), so a reader or a second run writing the
    same name never sees a half-written image; OutputError when it cannot be written."""
    path = drawn_path(path)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(os.path.splitext(path)[1], bgr)
    if not ok:
        raise OSError(f"cv2 could not encode {path}")
    return write_bytes(path, data)
