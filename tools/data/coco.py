"""COCO-style annotation files: images, categories and the label <-> category id mapping;
class-name files (classes_path) and the one a training run writes.

Used by training (annotations to targets), evaluation (image list, mapping labels back to
category ids) and test-dev (image info only, no annotations). Category ids need not be
contiguous; labels are 0..num_classes-1 in ascending category id order, the convention
of the reference implementations.
"""

import contextlib
import io
import json
import os

from ..errors import ConfigError, MissingInputError, UserError


class AnnotationError(UserError):
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


def read_class_names(path):
    """Class names from a classes_path file, one per line in label order (blank lines
    skipped)."""
    if not os.path.isfile(path):
        problem = "is not a file" if os.path.exists(path) else "does not exist"
        raise MissingInputError(f"classes_path {path!r} {problem}; write one class name "
                                "per line, in label order")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; write one class name per line") from None


def load_class_names(cfg):
    """Class names from ``cfg.classes_path``; must match num_classes."""
    path = cfg.classes_path
    names = read_class_names(path)
    if len(names) != cfg.num_classes:
        raise ConfigError(f"{path} lists {len(names)} classes but num_classes="
                          f"{cfg.num_classes}; make them agree")
    return names


def write_training_classes(cfg, coco, output_dir, log=print):
    """Check the training set against the config and write its class names to
    OUTPUT/classes.txt, which demo.py and eval.py read for a trained model.

    Class names come from the annotation file (``coco``, a CocoSet); a ``classes_path``
    that lists other names, or another order, is reported and not used."""
    coco.check_classes(cfg.num_classes)
    names = coco.class_names
    if cfg.classes_path and os.path.exists(cfg.classes_path):
        if read_class_names(cfg.classes_path) != names:
            log(f"warning: {cfg.classes_path} does not list the annotation file's classes in "
                f"label order; predictions will be labelled with {output_dir}/classes.txt")
    path = os.path.join(output_dir, "classes.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    return path
