"""Predictions as data: one :class:`Result` per image, and its masks as COCO RLE or polygons.

The post-processing gives, per image, a dict of ``masks`` [K, H, W] bool at the image's own
size, ``labels`` [K] int64 (0-based), ``scores`` [K] float32 and ``boxes`` [K, 4] float32
(x0, y0, x1, y1, exclusive ends). :class:`Result` wraps it with the class names and the image,
and turns it into what users ask for: a drawn image, COCO result records (the RLE that
eval.py writes), polygons, a json-ready dict (``demo.py --save-json``, collected into one
file by :func:`write_results`) or one PNG per mask (``demo.py --save-masks``).
"""

import json
import re

import numpy as np
from pycocotools import mask as mask_utils

from ..files import write_bytes, write_text


def encode_masks(masks):
    """[K, H, W] bool -> K compressed RLEs whose ``counts`` are str, ready for json."""
    if len(masks) == 0:
        return []
    # pycocotools encodes column-major uint8 [H, W, K].
    rles = mask_utils.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)), dtype=np.uint8))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode_rle(rle):
    """One RLE (``counts`` str or bytes) -> [H, W] bool."""
    counts = rle["counts"]
    rle = {"size": list(rle["size"]),
           "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def mask_polygons(mask, min_points=3):
    """Outlines of one [H, W] bool mask: a list of flat [x0, y0, x1, y1, ...] lists, one per
    connected part, in pixel coordinates (the centres of the boundary pixels; COCO's
    polygon format). Holes are not outlines of their own, as COCO polygons cannot hold
    them; parts with fewer than ``min_points`` points (single pixels, lines) are left out,
    since a polygon needs an area."""
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= min_points]


class Result:
    """The instances found in one image.

    masks [K, H, W] bool, labels [K] int64, scores [K] float32, boxes [K, 4] float32 (x0, y0,
    x1, y1), best score first; ``class_names`` lists every class of the model (label i is
    ``class_names[i]``); ``image`` is the RGB image predicted (kept for :meth:`draw`), ``path``
    where it came from (None for an array).
    """

    def __init__(self, prediction, class_names, image=None, path=None):
        self.masks = np.asarray(prediction["masks"], dtype=bool)
        self.labels = np.asarray(prediction["labels"], dtype=np.int64)
        self.scores = np.asarray(prediction["scores"], dtype=np.float32)
        self.boxes = np.asarray(prediction["boxes"], dtype=np.float32).reshape(-1, 4)
        self.class_names = list(class_names)
        self.image = image
        self.path = path

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        where = f" of {self.path}" if self.path else ""
        return f"Result({len(self)} instances{where}, image size {self.size})"

    @property
    def size(self):
        """(height, width) of the image."""
        if self.masks.ndim == 3:
            return tuple(int(v) for v in self.masks.shape[1:])
        return tuple(self.image.shape[:2]) if self.image is not None else None

    @property
    def names(self):
        """The class name of each instance."""
        return [self.class_names[int(label)] for label in self.labels]

    def as_dict(self):
        """The post-processing dict the drawing and COCO code take."""
        return {"masks": self.masks, "labels": self.labels, "scores": self.scores,
                "boxes": self.boxes}

    def keep(self, thresh):
        """A Result with only the instances scoring at least ``thresh``."""
        chosen = self.scores >= thresh
        return Result({k: v[chosen] for k, v in self.as_dict().items()}, self.class_names,
                      self.image, self.path)

    def draw(self, thresh=0.0):
        """RGB uint8 [H, W, 3]: the image with the instances scoring at least ``thresh``
        drawn as demo.py draws them."""
        from .visualize import draw_instances

        if self.image is None:
            raise ValueError("this Result holds no image to draw on")
        return draw_instances(self.image, self.as_dict(), self.class_names, thresh)

    def rles(self):
        """Compressed COCO RLE of each mask (``counts`` as str)."""
        return encode_masks(self.masks)

    def to_coco(self, image_id, cat_ids=None):
        """COCO result records (cocodataset.org/#format-results), as eval.py writes them:
        image_id, category_id, segmentation (RLE), bbox [x, y, w, h] of the mask (so box AP
        scores the same instances), score. ``cat_ids[label]`` is the dataset's category id
        of each label (default: label + 1, the 1-based ids of a dataset listing its classes
        in order)."""
        rles = self.rles()
        boxes = mask_utils.toBbox([dict(r, counts=r["counts"].encode("ascii")) for r in rles]) \
            if rles else []
        records = []
        for rle, box, label, score in zip(rles, boxes, self.labels, self.scores):
            category = int(cat_ids[int(label)]) if cat_ids is not None else int(label) + 1
            records.append({"image_id": int(image_id), "category_id": category,
                            "segmentation": {"size": [int(s) for s in rle["size"]],
                                             "counts": rle["counts"]},
                            "bbox": [float(v) for v in box], "score": float(score)})
        return records

    def polygons(self):
        """Per instance, its outlines as flat [x0, y0, x1, y1, ...] lists (see
        :func:`mask_polygons`)."""
        return [mask_polygons(mask) for mask in self.masks]

    def mask_paths(self, stem):
        """Where :meth:`save_masks` writes instance k: ``<stem>_<k>_<class>.png``, the
        class name with anything but letters, digits, '-' and '.' as '_'."""
        return [f"{stem}_{k}_{re.sub(r'[^0-9A-Za-z.-]+', '_', name)}.png"
                for k, name in enumerate(self.names)]

    def save_masks(self, stem):
        """One PNG per instance (0 outside the mask, 255 inside, at the image's size) at
        :meth:`mask_paths`, each written atomically; returns the paths."""
        import cv2

        paths = self.mask_paths(stem)
        for path, mask in zip(paths, self.masks):
            ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255)
            if not ok:
                raise OSError(f"cv2 could not encode {path}")
            write_bytes(path, data)
        return paths

    def to_json(self, file_name=None):
        """A json-ready dict: the image's file name and size, and per detection its class id
        and name, score, box (x0, y0, x1, y1) and RLE mask (``demo.py --save-json``)."""
        height, width = self.size if self.size else (None, None)
        detections = []
        for rle, label, score, box in zip(self.rles(), self.labels, self.scores, self.boxes):
            detections.append({"class_id": int(label),
                               "class_name": self.class_names[int(label)],
                               "score": float(score), "box": [float(v) for v in box],
                               "mask": {"size": [int(s) for s in rle["size"]],
                                        "counts": rle["counts"]}})
        return {"file_name": file_name if file_name is not None else self.path,
                "height": height, "width": width, "detections": detections}


def write_results(path, images, **about):
    """Write ``{**about, "images": images}`` (``images``: :meth:`Result.to_json` dicts) to
    ``path`` as json, atomically; returns ``path``."""
    return write_text(path, json.dumps(dict(about, images=list(images))))
