"""Drawing predicted instances: translucent masks, outlines, class names and scores."""

import colorsys
import os

import cv2
import numpy as np


def instance_colors(count):
    """``count`` well-separated RGB colours (golden-ratio hue steps), same every run."""
    colors = []
    for i in range(count):
        hue = (0.1 + i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colors.append((int(255 * r), int(255 * g), int(255 * b)))
    return colors


def draw_instances(image, result, class_names, thresh, alpha=0.5):
    """RGB uint8 [H, W, 3] + a post-processing result -> a new RGB image with every
    detection scoring at least ``thresh`` drawn; the best-scoring instance is drawn last."""
    canvas = image.copy()
    keep = [i for i in range(len(result["scores"])) if result["scores"][i] >= thresh]
    colors = instance_colors(len(keep))
    for color, i in reversed(list(zip(colors, keep))):
        mask = result["masks"][i]
        if not mask.any():
            continue
        region = canvas[mask].astype(np.float32)
        canvas[mask] = (region * (1 - alpha) + np.float32(color) * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, color, 2)
    for color, i in zip(colors, keep):
        x0, y0 = result["boxes"][i][:2]
        label = f"{class_names[result['labels'][i]]} {result['scores'][i]:.2f}"
        _draw_label(canvas, label, int(x0), int(y0), color)
    return canvas


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


def save_image(path, image):
    """Write an RGB image; formats cv2 cannot write fall back to .png beside it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok = False
    try:
        ok = cv2.imwrite(path, bgr)
    except cv2.error:
        ok = False
    if not ok:
        path = os.path.splitext(path)[0] + ".png"
        if not cv2.imwrite(path, bgr):
            raise OSError(f"could not write {path}")
    return path
