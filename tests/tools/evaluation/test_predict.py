"""predict_coco with a stand-in network: the threaded loop must hand every image's
detections to the right image id, whatever the batching and thread timing."""

import json

import cv2
import numpy as np
import pytest

from config import load_config
from tools.data.coco import CocoSet
from tools.data.synthetic import make_dataset
from tools.evaluation.predict import evaluate_segm, predict_coco
from tools.inference.backends import DygraphPredictor


class Identity:
    """A 'network' that returns its input batch."""

    def eval(self):
        pass

    def __call__(self, images):
        return images


def brightness_postprocess(outputs, crop_hws, ori_hws):
    """One detection per image: label = image brightness // 50 (the test draws each image
    in one grey level), a mask over the top-left quarter of the original image."""
    results = []
    for image, (h, w) in zip(outputs.numpy(), ori_hws):
        level = round(float(image[0, :8, :8].mean() * 58.395 + 123.675))
        mask = np.zeros((1, h, w), bool)
        mask[0, :h // 2, :w // 2] = True
        results.append({"masks": mask, "labels": np.array([level // 50], np.int64),
                        "scores": np.array([0.5], np.float32),
                        "boxes": np.array([[0, 0, w // 2, h // 2]], np.float32)})
    return results


@pytest.fixture
def grey_set(tmp_path):
    # Ids deliberately out of file order; image 30 is listed but missing on disk.
    levels = {12: 0, 5: 50, 40: 100, 7: 150, 21: 200}
    images = []
    for image_id, level in levels.items():
        name = f"grey{image_id}.png"
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), level, np.uint8))
        images.append({"id": image_id, "file_name": name, "height": 40, "width": 60})
    images.append({"id": 30, "file_name": "gone.png", "height": 40, "width": 60})
    categories = [{"id": 100 + k, "name": f"level{k}"} for k in range(5)]
    ann = tmp_path / "grey.json"
    ann.write_text(json.dumps({"images": images, "categories": categories,
                               "annotations": []}))
    return CocoSet(str(ann), str(tmp_path)), levels


@pytest.mark.parametrize("batch_size", [1, 2])
def test_detections_reach_their_own_image(grey_set, batch_size, capsys):
    coco, levels = grey_set
    cfg = load_config(2, ["test_size=(32,48)", "pixel_mean=(123.675,123.675,123.675)",
                          "pixel_std=(58.395,58.395,58.395)"])
    preds = predict_coco(DygraphPredictor(Identity(), brightness_postprocess), "mmcv", cfg,
                         coco, batch_size=batch_size, workers=2)
    assert preds.image_ids == sorted(levels)
    assert [i for i, _ in preds.skipped] == [30] and "gone.png" in preds.skipped[0][1]
    by_image = {r["image_id"]: r for r in preds.records}
    assert sorted(by_image) == sorted(levels)
    for image_id, level in levels.items():
        assert by_image[image_id]["category_id"] == 100 + level // 50
        assert by_image[image_id]["bbox"] == [0.0, 0.0, 30.0, 20.0]
        assert by_image[image_id]["segmentation"]["size"] == [40, 60]
    err = capsys.readouterr().err
    assert "6/6" in err and "skipped image id 30" in err  # the bar counts skipped images
    assert preds.times.counts["forward"] == 5
    assert preds.mismatched == []


def test_images_whose_size_differs_from_the_annotations_are_reported(grey_set):
    coco, _ = grey_set
    coco.coco.imgs[7]["height"] = 60   # the file is 40 x 60
    coco.coco.imgs[7]["width"] = 40
    cfg = load_config(2, ["test_size=(32,48)"])
    preds = predict_coco(DygraphPredictor(Identity(), brightness_postprocess), "mmcv", cfg,
                         coco)
    assert preds.mismatched == [(7, (40, 60), (60, 40))]
    assert "id 7: 40x60 on disk, 60x40 listed" in preds.warnings(6)[1]


# ------------------------------------------------- evaluate_segm, the training hook
class Replay:
    """A stand-in model + post-processor that 'predicts' given masks, image by image."""

    def __init__(self, per_image):
        self.per_image = list(per_image)

    def eval(self):
        pass

    def __call__(self, inputs):
        return None

    def post(self, outputs, crop_hws, ori_hws):
        return [self.per_image.pop(0) for _ in ori_hws]


def ground_truth(coco, image_id, drop=0):
    anns = coco.annotations(image_id)[drop:]
    masks = np.stack([coco.coco.annToMask(a).astype(bool) for a in anns])
    return {"masks": masks, "labels": np.array([coco.label_of[a["category_id"]] for a in anns]),
            "scores": np.ones(len(anns), np.float32), "boxes": np.zeros((len(anns), 4))}


def test_perfect_and_partial_predictions(tmp_path):
    paths = make_dataset(str(tmp_path), train=1, val=3, seed=1, size=(64, 80))
    coco = CocoSet(paths["val"], str(tmp_path / "val"))
    cfg = load_config(4, ["test_size=(64,80)"])
    perfect = Replay(ground_truth(coco, i) for i in coco.image_ids)
    stats = evaluate_segm(perfect, perfect.post, cfg, coco, "mmcv")
    assert stats["AP"] == 1.0 and stats["images"] == 3
    # Missing the first instance of every image lowers recall, hence AP.
    partial = Replay(ground_truth(coco, i, drop=1) for i in coco.image_ids)
    assert evaluate_segm(partial, partial.post, cfg, coco, "mmcv")["AP"] < 1.0
    nothing = Replay({"masks": np.zeros((0, 64, 80), bool), "labels": np.zeros(0, int),
                      "scores": np.zeros(0), "boxes": np.zeros((0, 4))} for _ in range(3))
    stats = evaluate_segm(nothing, nothing.post, cfg, coco, "mmcv")
    assert stats["AP"] == 0.0 and stats["detections"] == 0
