"""COCO-style annotation files: images, categories and the label <-> category id mapping.

Used by training (annotations to targets), evaluation (image list, mapping labels back to
category ids) and test-dev (image info only, no annotations). Category ids need not be
contiguous; labels are 0..num_classes-1 in ascending category id order, the convention
of the reference implementations.
"""

import contextlib
import io
import json
import os


class AnnotationError(Exception):
    """An annotation file that is missing or not a usable COCO-style json."""


def read_json(path, error, what="file"):
    """The parsed contents of the json file ``path``; raises ``error`` (an exception class)
    with a message when the file is missing (``what`` names it) or is not json."""
    if not os.path.isfile(path):
        raise error(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid json ({err})") from None


class CocoSet:
    """Args:
        ann_file: COCO-style json (instances_*.json, or image_info_*.json without
            annotations).
        image_dir: folder the ``file_name`` entries are relative to.
    """

    def __init__(self, ann_file, image_dir):
        from pycocotools.coco import COCO

        data = read_json(ann_file, AnnotationError, "annotation file")
        if not isinstance(data, dict) or "images" not in data or "categories" not in data:
            raise AnnotationError(f"{ann_file}: a COCO-style file needs 'images' and "
                                  "'categories' lists")
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.ann_file = ann_file
        self.image_dir = image_dir
        self.cat_ids = sorted(self.coco.getCatIds())
        if not self.cat_ids:
            raise AnnotationError(f"{ann_file}: no categories")
        self.label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.image_ids = sorted(self.coco.getImgIds())

    @property
    def num_classes(self):
        return len(self.cat_ids)

    def image_info(self, image_id):
        return self.coco.imgs[image_id]

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def annotations(self, image_id):
        return self.coco.imgToAnns.get(image_id, [])

    def check_classes(self, num_classes):
        """Raise if the config's class count disagrees with the annotation file."""
        if num_classes != self.num_classes:
            raise AnnotationError(
                f"{self.ann_file} has {self.num_classes} categories but the config has "
                f"num_classes={num_classes}; set num_classes={self.num_classes}")
