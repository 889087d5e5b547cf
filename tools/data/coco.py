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
from collections import Counter

from ..errors import ConfigError, MissingInputError, UserError
from ..files import write_text


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


def _refuse_repeated_ids(ann_file, entries, what, consequence):
    """Raise AnnotationError naming the ids that more than one of ``entries`` carries."""
    counts = Counter(e.get("id") for e in entries if isinstance(e, dict))
    repeated = sorted((i for i, n in counts.items() if n > 1), key=str)
    if repeated:
        shown = ", ".join(str(i) for i in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        raise AnnotationError(f"{ann_file}: {len(repeated)} {what} ids appear more than once "
                              f"({shown}); {consequence}. Give every {what} its own id")


def check_ids(ann_file, data):
    """Refuse the ids pycocotools would silently mis-index (``data``: the parsed json).

    pycocotools keeps images and annotations in dicts by id, so of several entries with one
    id only the last survives: images sharing an id become one image holding the
    annotations of all of them (the others are never predicted), and of annotations sharing
    an id COCOeval scores the last one once for each and never sees the others. COCOeval
    also uses 0 for "matched nothing", so an annotation with id 0 can never be matched: a
    perfect detection of it counts as a false positive.
    """
    _refuse_repeated_ids(ann_file, data["images"], "image",
                         "pycocotools would keep one image per id with the annotations of "
                         "all, so training and evaluation would silently use wrong masks")
    annotations = data.get("annotations") or []
    _refuse_repeated_ids(ann_file, annotations, "annotation",
                         "COCOeval would score one annotation of each id in place of the "
                         "others, which changes AP silently")
    if any(isinstance(a, dict) and a.get("id") == 0 for a in annotations):
        raise AnnotationError(f"{ann_file}: an annotation has id 0, which COCOeval reads as "
                              "'matched nothing', so no detection of it can count; number "
                              "annotations from 1")


class CocoSet:
    """Args:
        ann_file: COCO-style json (instances_*.json, or image_info_*.json without
            annotations).
        image_dir: folder the ``file_name`` entries are relative to.
    Raises AnnotationError for a file that is missing, not COCO-style, or whose ids
    pycocotools would mis-index (:func:`check_ids`).
    """

    def __init__(self, ann_file, image_dir):
        from pycocotools.coco import COCO

        if not ann_file:
            raise AnnotationError("no annotation file given (the config's path for this set "
                                  "is None); set val_path, test_path or train_path")
        data = read_json(ann_file, AnnotationError, "annotation file")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
                not isinstance(data.get("categories"), list):
            raise AnnotationError(f"{ann_file}: a COCO-style file needs 'images' and "
                                  "'categories' lists")
        check_ids(ann_file, data)
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

    def require_annotations(self):
        """Raise if there is nothing to score: no annotation that COCOeval counts (crowd
        regions are ignored), for which every AP would print as -1."""
        if not any(not a.get("iscrowd", 0) for i in self.image_ids
                   for a in self.annotations(i)):
            raise AnnotationError(
                f"{self.ann_file} holds no annotations to score (only crowd regions or none "
                "at all), so every AP would be -1; evaluate with an instances file, or use "
                "test_dev.py to predict an image-info file")

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
    # Atomically (tools.files): demo.py or eval.py may be reading it while training writes.
    return write_text(os.path.join(output_dir, "classes.txt"), "\n".join(names) + "\n")
