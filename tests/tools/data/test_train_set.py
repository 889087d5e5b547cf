import json

import numpy as np
import pytest

from tests.fixtures.coco_data import voc_dataset, voc_photo
from tools.data.coco import AnnotationError
from tools.data.train_set import CocoTrainSet


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voc")
    return voc_dataset(str(folder), copies=2, use_polygons=(0, 1), crowd=(2,), extras=True)


def test_awkward_annotations_are_counted_not_fatal(voc):
    ann, image_dir, _ = voc
    data = CocoTrainSet(ann, image_dir)
    assert len(data) == 2  # the two photos; the blank and the missing image are skipped
    assert data.skipped == {"crowd": 2, "degenerate": 2, "outside": 1, "empty_image": 1,
                            "missing_file": 1}
    summary = data.summary()
    assert "2 crowd annotations" in summary and "1 images whose file is missing" in summary


def test_masks_and_labels_match_the_source(voc):
    ann, image_dir, gt = voc
    rgb, masks, labels, names = voc_photo()
    data = CocoTrainSet(ann, image_dir)
    image, got_masks, got_boxes, got_labels = data.load(0)
    assert image.shape == rgb.shape
    keep = [k for k in range(len(masks)) if k != 2]  # instance 2 is a crowd
    assert len(got_masks) == len(keep) == 18
    # Labels follow ascending category ids: VOC class ids sorted.
    order = sorted(names)
    assert got_labels.tolist() == [order.index(int(labels[k])) for k in keep]
    anns = [a for a in data.records[0]["anns"]]
    # Boxes are the annotations' own, as written (float64).
    assert got_boxes.dtype == np.float64
    np.testing.assert_array_equal(got_boxes, [a["bbox"] for a in anns])
    for got, k, a in zip(got_masks, keep, anns):
        if k in (0, 1):
            # Polygons: exactly what pycocotools rasterises (the outer contours lose the
            # VOC masks' holes and fragments, so compare with COCO's own decoding).
            assert np.array_equal(got, data.coco.coco.annToMask(a))
        else:
            assert np.array_equal(got, masks[k])  # RLE is exact
    assert data.class_names == [names[k] for k in order]


def test_unreadable_image_is_replaced_with_a_warning(tmp_path, capsys):
    ann, image_dir, _ = voc_dataset(str(tmp_path), copies=2)
    (tmp_path / "images" / "voc_000.jpg").write_bytes(b"not a jpeg")
    data = CocoTrainSet(ann, image_dir, seed=1)
    sample = data[0]
    assert sample["image_id"] == 2 and len(sample["masks"]) == 19
    assert "not a decodable image" in capsys.readouterr().err


def test_no_usable_image_is_a_clear_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 4}],
        "categories": [{"id": 1, "name": "a"}], "annotations": []}))
    with pytest.raises(AnnotationError, match="no image with a usable annotation"):
        CocoTrainSet(str(path), str(tmp_path))


def test_transform_receives_a_private_random_stream(voc):
    ann, image_dir, _ = voc
    seen = []

    def transform(image, masks, boxes, labels, rng):
        seen.append(rng.randint(1 << 30))
        return image, masks, boxes, labels

    data = CocoTrainSet(ann, image_dir, transform=transform)
    data[0]
    data[1]
    assert len(set(seen)) == 2 and isinstance(data[0]["masks"], np.ndarray)


def add_strip(ann, image_dir, listed_hw, file_hw):
    """Add image 99 (a 1-instance strip) to the json ``ann``: listed at ``listed_hw``, saved
    at ``file_hw``."""
    import cv2

    with open(ann) as f:
        data = json.load(f)
    cv2.imwrite(f"{image_dir}/strip.png", np.full(file_hw + (3,), 200, np.uint8))
    h, w = listed_hw
    data["images"].append({"id": 99, "file_name": "strip.png", "height": h, "width": w})
    data["annotations"].append({
        "id": 9999, "image_id": 99, "category_id": data["categories"][0]["id"], "iscrowd": 0,
        "area": 4.0 * (w - 4), "bbox": [2, 0, w - 4, 4],
        "segmentation": [[2, 0, w - 2, 0, w - 2, 4, 2, 4]]})
    with open(ann, "w") as f:
        json.dump(data, f)


def test_an_image_too_elongated_for_the_training_resize_is_skipped_and_counted(tmp_path):
    ann, image_dir, _ = voc_dataset(str(tmp_path), copies=1)
    add_strip(ann, image_dir, (10, 4000), (10, 4000))
    resize = ((128,), 192, "mmcv")  # config 4: a long side at most 24 times the short one
    data = CocoTrainSet(ann, image_dir, resize=resize)
    assert len(data) == 1 and data.skipped == {"elongated": 1}
    assert "1 images too elongated for the training resize (skipped)" in data.summary()
    assert len(CocoTrainSet(ann, image_dir)) == 2  # without the training sizes: no check


def test_a_file_more_elongated_than_listed_is_replaced_when_read(tmp_path, capsys):
    ann, image_dir, _ = voc_dataset(str(tmp_path), copies=1)
    add_strip(ann, image_dir, (40, 400), (10, 4000))
    data = CocoTrainSet(ann, image_dir, seed=0, resize=((128,), 192, "mmcv"))
    assert len(data) == 2 and not data.skipped  # the listed 40 x 400 is fine
    strip = [k for k, r in enumerate(data.records) if r["image_id"] == 99][0]
    sample = data[strip]
    assert sample["image_id"] == 1  # the photo, instead of the strip
    assert "strip.png: 4000x10 pixels is too elongated" in capsys.readouterr().err


def test_annotations_without_a_box_use_their_masks_box(tmp_path):
    ann, image_dir, gt = voc_dataset(str(tmp_path), copies=1)
    with open(ann) as f:
        data = json.load(f)
    # Three annotations lose their bbox in three ways; one gets a box unlike its mask's.
    del data["annotations"][0]["bbox"]
    data["annotations"][1]["bbox"] = []
    data["annotations"][2]["bbox"] = [1.0, 2.0, float("nan"), 4.0]
    data["annotations"][3]["bbox"] = [5.0, 6.0, 7.0, 8.0]
    with open(ann, "w") as f:
        json.dump(data, f)
    dataset = CocoTrainSet(ann, image_dir)
    assert dataset.mask_boxes == 3
    assert "3 annotations without a bbox (their mask's box is used)" in dataset.summary()
    _, masks, boxes, _ = dataset.load(0)
    for k in range(3):
        ys, xs = np.nonzero(masks[k])
        assert boxes[k].tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
    assert boxes[3].tolist() == [5.0, 6.0, 7.0, 8.0]
    sample = dataset[0]
    assert sample["boxes"].shape == (len(sample["masks"]), 4)
