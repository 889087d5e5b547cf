"""The training dataset: a COCO-style annotation file read into (image, masks, labels).

Problems a real annotation file has are found when the dataset is built and reported once
as counts, never as a crash inside a loader worker:
  * crowd annotations (iscrowd=1): ignored for targets, as in both references;
  * polygons with fewer than 3 points or zero area, RLE whose size disagrees with the
    image, unknown category ids, boxes entirely outside the image: the annotation is dropped;
  * images with no usable annotation: skipped, as the references skip them in training;
  * image files that are missing: skipped;
  * images too elongated for the training resize (the short side would shrink below
    tools.data.preprocess.MIN_RESIZED_SIDE at the smallest training size): skipped.
An image that exists but cannot be decoded (or is not the size the annotation file says,
and too elongated at its real size) is only found when it is read; the worker then warns
and returns another image instead.
"""

import math
import os
import sys
import threading
from collections import Counter

import numpy as np
from pycocotools import mask as mask_utils

from .boxes import mask_boxes_xywh
from .coco import AnnotationError, CocoSet
from .preprocess import ImageReadError, ImageSizeError, check_resizable, read_image

SKIP_REASONS = {
    "crowd": "crowd annotations (ignored for targets)",
    "degenerate": "degenerate polygons (< 3 points or zero area)",
    "bad_rle": "RLE masks whose size differs from the image",
    "bad_segmentation": "annotations without a usable segmentation",
    "outside": "annotations whose box lies outside the image",
    "unknown_category": "annotations with a category id not in 'categories'",
    "empty_image": "images without any usable annotation (skipped)",
    "missing_file": "images whose file is missing (skipped)",
    "elongated": "images too elongated for the training resize (skipped)",
}


def _polygon_area(poly):
    xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
    return 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))


def check_annotation(ann, height, width, label_of):
    """The reason to drop ``ann`` (a SKIP_REASONS key), or None if it is usable."""
    if ann.get("iscrowd", 0):
        return "crowd"
    if ann.get("category_id") not in label_of:
        return "unknown_category"
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if not polys or max(_polygon_area(p) for p in polys) <= 0:
            return "degenerate"
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [height, width]:
            return "bad_rle"
    else:
        return "bad_segmentation"
    box = ann.get("bbox")
    if box and len(box) == 4:
        x, y, w, h = box
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            return "outside"
    return None


def annotation_box(ann):
    """The annotation's bbox as four floats (x, y, w, h), or None when it has none (no
    'bbox', or not four finite numbers). A zero-size box is kept: its instance then falls
    in no scale range, as the references, which drop such annotations, give it no target."""
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in box):
        return None
    return [float(v) for v in box]


def decode_mask(seg, height, width):
    """A polygon list or an RLE (compressed or not) -> uint8 [height, width]."""
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(np.uint8)


class CocoTrainSet:
    """Map-style dataset for paddle.io.DataLoader.

    Args:
        ann_file, image_dir: COCO-style json and the folder its file names are relative to.
        transform: ``transform(image, masks, boxes, labels, rng) -> (chw, masks, boxes,
            labels)`` (tools.data.transforms.TrainTransform), or None for the decoded sample.
            boxes: each annotation's COCO bbox (x, y, w, h) as float64; an annotation
            without one gets its mask's box, and the summary counts those.
        seed: base seed; each worker process derives its own random stream from it.
        resize: (short sides, long-side cap, preprocessing style) of the training resize
            (train_sizes, train_max_size): images it would squeeze thinner than
            MIN_RESIZED_SIDE are skipped and counted. None: no such check.
    __getitem__(i) -> dict(image, masks [K, h, w] uint8, boxes [K, 4], labels [K] int64,
        image_id)
    """

    def __init__(self, ann_file, image_dir, transform=None, seed=0, resize=None):
        self.coco = CocoSet(ann_file, image_dir)
        self.transform = transform
        self.seed = seed
        self.resize = resize
        self.skipped = Counter()
        self.mask_boxes = 0  # annotations used without a bbox of their own
        self.records = []
        for image_id in self.coco.image_ids:
            record = self._record(image_id)
            if record is not None:
                self.records.append(record)
                self.mask_boxes += sum(annotation_box(a) is None for a in record["anns"])
        if not self.records:
            raise AnnotationError(f"{ann_file}: no image with a usable annotation; "
                                  f"{self.summary()}")
        self._rng, self._rng_pid = None, None
        self._lock = threading.Lock()

    def _record(self, image_id):
        info = self.coco.image_info(image_id)
        h, w = int(info.get("height", 0)), int(info.get("width", 0))
        path = self.coco.image_path(image_id)
        if not os.path.isfile(path):
            self.skipped["missing_file"] += 1
            return None
        anns = []
        for ann in self.coco.annotations(image_id):
            reason = check_annotation(ann, h, w, self.coco.label_of)
            if reason:
                self.skipped[reason] += 1
            else:
                anns.append(ann)
        if not anns:
            self.skipped["empty_image"] += 1
            return None
        if h > 0 and w > 0 and self._size_error(h, w, path) is not None:
            self.skipped["elongated"] += 1
            return None
        return {"image_id": image_id, "path": path, "height": h, "width": w, "anns": anns}

    def _size_error(self, h, w, path):
        """The ImageSizeError of an h x w image at the smallest training size (the
        thinnest it gets), or None; always None without ``resize``."""
        if self.resize is None:
            return None
        sizes, max_size, style = self.resize
        try:
            check_resizable(h, w, (min(sizes), max_size), style, source=path)
        except ImageSizeError as err:
            return err
        return None

    @property
    def class_names(self):
        return self.coco.class_names

    def summary(self):
        """One line per kind of problem found, or 'no problems found'."""
        parts = [f"{n} {SKIP_REASONS[k]}" for k, n in sorted(self.skipped.items())]
        if self.mask_boxes:
            parts.append(f"{self.mask_boxes} annotations without a bbox (their mask's box "
                         "is used)")
        return "; ".join(parts) or "no problems found in the annotations"

    def __len__(self):
        return len(self.records)

    def rng(self):
        """A random stream private to this process: loader workers are forked copies of the
        dataset, so each derives its own stream from (seed, worker id) on first use."""
        import paddle

        with self._lock:
            if self._rng_pid != os.getpid():
                worker = paddle.io.get_worker_info()
                stream = 0 if worker is None else worker.id + 1
                state = np.random.SeedSequence([self.seed, stream]).generate_state(1)
                self._rng = np.random.RandomState(state)
                self._rng_pid = os.getpid()
            return self._rng

    def load(self, index):
        """(image, masks, boxes, labels) decoded, before any transform; boxes are the
        annotations' COCO (x, y, w, h), float64, or the mask's where there is none."""
        record = self.records[index]
        image = read_image(record["path"])
        h, w = image.shape[:2]
        if (h, w) != (record["height"], record["width"]):
            print(f"warning: {record['path']} is {w}x{h} but the annotation file says "
                  f"{record['width']}x{record['height']}; polygons are drawn at the real size",
                  file=sys.stderr)
            error = self._size_error(h, w, record["path"])
            if error is not None:
                raise error  # replaced by another image in __getitem__, with a warning
        masks, boxes, labels = [], [], []
        for ann in record["anns"]:
            seg = ann["segmentation"]
            if isinstance(seg, dict) and list(seg["size"]) != [h, w]:
                continue
            mask = decode_mask(seg, h, w)
            if mask.any():  # a polygon outside the image rasterises to nothing
                masks.append(mask)
                box = annotation_box(ann)
                boxes.append(mask_boxes_xywh(mask[None])[0] if box is None else box)
                labels.append(self.coco.label_of[ann["category_id"]])
        masks = np.stack(masks) if masks else np.zeros((0, h, w), np.uint8)
        boxes = np.array(boxes, np.float64).reshape(-1, 4)
        return image, masks, boxes, np.asarray(labels, np.int64)

    def __getitem__(self, index):
        rng = self.rng()
        for _ in range(10):
            try:
                image, masks, boxes, labels = self.load(index)
                break
            except ImageReadError as err:
                print(f"warning: {err}; using another image instead", file=sys.stderr)
                index = rng.randint(len(self.records))
        else:
            raise ImageReadError("10 unreadable images in a row; check the image folder")
        if self.transform is not None:
            image, masks, boxes, labels = self.transform(image, masks, boxes, labels, rng)
        return {"image": image, "masks": masks, "boxes": boxes, "labels": labels,
                "image_id": self.records[index]["image_id"]}
