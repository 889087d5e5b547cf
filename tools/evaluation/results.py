"""Predictions as COCO result records, and the files that hold them.

A record follows COCO's results format (cocodataset.org/#format-results): ``image_id``,
``category_id`` (the dataset's id, not our 0-based label), ``score`` as a float, and for
instance segmentation a ``segmentation`` in compressed RLE from pycocotools.mask.encode.
Each record also carries the ``bbox`` [x, y, w, h] of its mask, so one file serves both
mask AP and box AP; :mod:`tools.evaluation.cocoeval` gives each metric only the field it needs.
"""

import io
import json
import os
import zipfile

from pycocotools import mask as mask_utils

from ..data.coco import read_json
from ..errors import UserError
from ..files import atomic_write
from ..inference.instances import encode_masks

RECORD_KEYS = ("image_id", "category_id", "score")


class ResultsFileError(UserError):
    """A results json that cannot be read back or does not fit the annotation file."""


def encode_result(result, image_id, cat_ids):
    """Records for one image.

    Args:
        result: the post-processing dict (masks [k, H, W] bool, labels [k], scores [k]).
        image_id: the image's id in the annotation file.
        cat_ids: category id of each label (``CocoSet.cat_ids``).

    The box is taken from the encoded mask (pycocotools toBbox: width = last column - first
    column + 1), so box AP measures the same instances as mask AP; an empty mask gets
    [0, 0, 0, 0].
    """
    rles = encode_masks(result["masks"])
    if not rles:
        return []
    boxes = mask_utils.toBbox(rles)
    records = []
    for rle, box, label, score in zip(rles, boxes, result["labels"], result["scores"]):
        records.append({"image_id": int(image_id), "category_id": int(cat_ids[int(label)]),
                        "segmentation": {"size": [int(s) for s in rle["size"]],
                                         "counts": rle["counts"]},
                        "bbox": [float(v) for v in box], "score": float(score)})
    return records


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (tools.files): an interrupted run never leaves
    a truncated json where a good one was, and two runs writing the same file leave one
    whole file, not a mixture."""
    with atomic_write(path, "w") as f:
        json.dump(data, f)
    return path


def read_results(path):
    """Records from a results json written by :func:`write_json` (or any COCO results
    file with segmentation or bbox fields). Raises ResultsFileError when unusable."""
    records = read_json(path, ResultsFileError, "results file")
    if not isinstance(records, list):
        raise ResultsFileError(f"{path}: a COCO results file is a list of records")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS) or (
                "segmentation" not in record and "bbox" not in record):
            raise ResultsFileError(
                f"{path}: record {i} needs {', '.join(RECORD_KEYS)} and a segmentation "
                "or bbox")
    return records


def info_path(results_path):
    """Where the run's summary (evaluated image ids, skipped files, AP) sits next to it."""
    return f"{results_path.removesuffix('.json')}.info.json"


def read_info(results_path):
    """The summary written next to ``results_path``, or {} if there is none."""
    path = info_path(results_path)
    if not os.path.isfile(path):
        return {}
    info = read_json(path, ResultsFileError)
    return info if isinstance(info, dict) else {}


def write_submission(records, folder, testset="test-dev2017", alg="solov2"):
    """Write the instance-mask results COCO's evaluation server takes; returns
    (json path, zip path).

    The server wants ``detections_<testset>_<alg>_results.json`` zipped with the json at
    the top of the archive. Boxes are left out: given a bbox, pycocotools' loadRes sizes a
    segmentation result by its box instead of its mask, which moves detections between
    the small / medium / large AP columns.
    """
    name = f"detections_{testset}_{alg}_results"
    segm = [{k: r[k] for k in ("image_id", "category_id", "segmentation", "score")}
            for r in records]
    json_path = os.path.join(folder, f"{name}.json")
    with atomic_write(json_path, "w") as f:
        json.dump(segm, f)
        size = f.tell()
    zip_path = os.path.join(folder, f"{name}.zip")
    # The zipped json is encoded again from the records, not read back from json_path: a
    # second run writing the same folder may have replaced that file in the meantime.
    # Zip64 headers only when a plain zip could not hold it (with a margin for deflate).
    with atomic_write(zip_path, "wb") as f, \
            zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open(os.path.basename(json_path), "w",
                    force_zip64=size > zipfile.ZIP64_LIMIT // 2) as member, \
            io.TextIOWrapper(member, encoding="utf-8") as text:
        json.dump(segm, text)
    return json_path, zip_path
