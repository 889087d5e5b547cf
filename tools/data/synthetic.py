"""A small COCO-style instance segmentation dataset of shapes on textured backgrounds.

Made by ``python tools/make_synthetic_coco.py --out data/shapes --train 200 --val 40``
(the quick tour, config 4) and by the tests. :func:`make_dataset` writes
OUT/{train,val}/*.png, OUT/annotations/instances_{train,val}.json and OUT/classes.txt.
Three classes (circle, square, triangle), 1-4 instances per image that do not overlap;
each annotation is the polygon whose rasterised pixels were painted. Everything is
generated offline from a seed, so the quick tour in the README runs anywhere. Every file is
written atomically (tools.files), so a dataset being made is never read half-written.
"""

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..files import write_bytes, write_text

CLASSES = ("circle", "square", "triangle")


def _background(rng, h, w):
    """Smooth random texture: upsampled noise in a random colour plus fine grain."""
    coarse = rng.uniform(0, 1, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    image = base + 50 * (texture - 0.5) + rng.normal(0, 6, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_polygon(rng, kind, h, w):
    """Vertices [x0, y0, x1, y1, ...] of a random circle (a 48-gon), square or triangle."""
    size = rng.uniform(0.12, 0.35) * min(h, w)
    cx, cy = rng.uniform(size, w - size), rng.uniform(size, h - size)
    corners = {"circle": 48, "square": 4, "triangle": 3}[kind]
    angle = rng.uniform(0, 2 * np.pi)
    steps = angle + 2 * np.pi * np.arange(corners) / corners
    return np.stack([cx + size * np.cos(steps), cy + size * np.sin(steps)], 1).ravel().tolist()


def polygon_mask(polygon, h, w):
    """The pixels COCO's own rasteriser (pycocotools) gives a polygon: painting exactly
    these makes the annotation and the image agree to the pixel."""
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], h, w))
    return mask_utils.decode(rle).astype(bool)


def mask_to_polygons(mask):
    """Outer contours of a binary mask as COCO polygons [[x0, y0, x1, y1, ...], ...]."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def make_split(folder, split, count, rng, size=(192, 256), start_id=1):
    """Generate ``count`` images; returns the COCO dict for the split.

    Shapes do not overlap, so each polygon annotation is exactly the painted region."""
    os.makedirs(os.path.join(folder, split), exist_ok=True)
    images, annotations = [], []
    h, w = size
    for i in range(count):
        image = _background(rng, h, w)
        occupied = np.zeros((h, w), bool)
        for _ in range(rng.randint(1, 5)):
            label = rng.randint(len(CLASSES))
            for _attempt in range(10):
                polygon = _shape_polygon(rng, CLASSES[label], h, w)
                mask = polygon_mask(polygon, h, w)
                # One pixel of clearance, so neighbouring shapes stay separate instances.
                grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                if mask.sum() >= 64 and not (grown & occupied).any():
                    break
            else:
                continue
            color = rng.uniform(0, 255, 3)
            image[mask] = (0.85 * color + 0.15 * image[mask]).astype(np.uint8)
            occupied |= mask
            ys, xs = np.nonzero(mask)
            x0, y0 = float(xs.min()), float(ys.min())
            annotations.append({
                "id": len(annotations) + start_id, "image_id": i + start_id,
                "category_id": label + 1, "iscrowd": 0, "area": float(mask.sum()),
                "bbox": [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0],
                "segmentation": [polygon]})
        name = f"{split}_{i:05d}.png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"cv2 could not encode {name}")
        write_bytes(os.path.join(folder, split, name), png)
        images.append({"id": i + start_id, "file_name": name, "height": h, "width": w})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}


def make_dataset(out, train=200, val=40, seed=0, size=(192, 256)):
    """Write the dataset under ``out``; returns {split: annotation path}."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    paths = {}
    for split, count in (("train", train), ("val", val)):
        data = make_split(out, split, count, rng, size)
        paths[split] = os.path.join(out, "annotations", f"instances_{split}.json")
        write_text(paths[split], json.dumps(data))
    write_text(os.path.join(out, "classes.txt"), "\n".join(CLASSES) + "\n")
    return paths
