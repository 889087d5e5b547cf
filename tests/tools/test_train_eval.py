import numpy as np

from config import load_config
from tools.coco import CocoSet
from tools.make_synthetic_coco import make_dataset
from tools.train_eval import evaluate_segm


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
