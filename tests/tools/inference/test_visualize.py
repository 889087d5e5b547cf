"""Drawing and saving (tools/inference/visualize.py): the drawing made within each mask's
region equals drawing the whole-image masks, its memory stays near one image, and saved
images are whole files even with two writers on one name."""

import os
import threading
import tracemalloc

import cv2
import numpy as np
import pytest

from tools.files import OutputError
from tools.inference import visualize
from tools.inference.visualize import (
    class_color,
    draw_instances,
    drawn_path,
    mask_region,
    save_image,
)


def full_size_reference(image, result, class_names, thresh, alpha=0.5):
    """Brute force: blend and outline every mask over the whole image."""
    canvas = image.copy()
    keep = [i for i, s in enumerate(result["scores"]) if s >= thresh]
    colors = [class_color(result["labels"][i]) for i in keep]
    for color, i in reversed(list(zip(colors, keep))):
        mask = result["masks"][i]
        if not mask.any():
            continue
        mixed = canvas.astype(np.float32) * (1 - alpha) + np.float32(color) * alpha
        canvas = np.where(mask[..., None], mixed.astype(np.uint8), canvas)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, color, 2)
    for color, i in zip(colors, keep):
        x0, y0 = result["boxes"][i][:2]
        label = f"{class_names[result['labels'][i]]} {result['scores'][i]:.2f}"
        visualize._draw_label(canvas, label, int(x0), int(y0), color)
    return canvas


def boxes_of(masks):
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        if mask.any():
            ys, xs = np.nonzero(mask)
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def awkward_result(h=61, w=83):
    """Masks touching every border, with a hole, in two pieces, empty, the whole image,
    a single pixel, overlapping ones; scores on both sides of the threshold."""
    rng = np.random.RandomState(0)
    masks = np.zeros((9, h, w), bool)
    masks[0, :20, :30] = True                        # top-left corner
    masks[1, h - 15:, w - 25:] = True                # bottom-right corner
    masks[1, h - 10:h - 5, w - 20:w - 10] = False    # a hole
    masks[2, 10:20, 40:50] = masks[2, 30:45, 5:12] = True   # two pieces
    # masks[3] stays empty
    masks[4] = True                                  # everything
    masks[5, 30, 60] = True                          # one pixel
    masks[6] = cv2.GaussianBlur(rng.rand(h, w), (0, 0), 3) > 0.5   # ragged blobs
    masks[7, :, 35:45] = True                        # top to bottom
    masks[8, 5:50, 10:70] = True                     # scored below the threshold
    scores = np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.1], np.float32)
    return {"masks": masks, "scores": scores, "labels": np.arange(9) % 3,
            "boxes": boxes_of(masks)}


@pytest.mark.parametrize("rows, alpha, numpy_copy", [
    (visualize.BLEND_ROWS, 0.5, False), (1, 0.5, False), (7, 0.3, False), (7, 0.5, True)])
def test_drawing_within_regions_equals_the_full_size_drawing(monkeypatch, rows, alpha,
                                                             numpy_copy):
    monkeypatch.setattr(visualize, "BLEND_ROWS", rows)  # blended in bands of this many rows
    if numpy_copy:  # as if cv2.copyTo answered with a new array: the numpy fallback
        monkeypatch.setattr(visualize.cv2, "copyTo", lambda src, mask, dst: src.copy())
    rng = np.random.RandomState(1)
    image = rng.randint(0, 256, (61, 83, 3)).astype(np.uint8)
    original = image.copy()
    result = awkward_result()
    names = ["circle", "square", "triangle"]
    drawn = draw_instances(image, result, names, 0.3, alpha)
    expected = full_size_reference(image, result, names, 0.3, alpha)
    assert (expected != image).any()
    np.testing.assert_array_equal(drawn, expected)
    np.testing.assert_array_equal(image, original)  # drawn on a copy


def test_mask_region_is_the_extent_of_the_set_pixels():
    mask = np.zeros((10, 12), bool)
    assert mask_region(mask) is None
    mask[3, 4] = mask[7, 9] = True
    assert mask_region(mask) == (4, 3, 10, 8)


def test_drawing_a_large_image_allocates_little_beyond_the_copy():
    """Whole-image work per mask (a uint8 copy of each mask for its outline, float copies
    of its pixels) is what made an 8000 x 6000 photo cost gigabytes; within regions, what
    numpy allocates stays close to the one output image."""
    h, w = 1500, 2000
    masks = np.zeros((20, h, w), bool)
    for i in range(20):
        y, x = 70 * i, 90 * i
        masks[i, y:y + 60, x:x + 80] = True
    result = {"masks": masks, "scores": np.full(20, 0.9, np.float32),
              "labels": np.zeros(20, np.int64), "boxes": boxes_of(masks)}
    image = np.zeros((h, w, 3), np.uint8)
    tracemalloc.start()
    try:
        drawn = draw_instances(image, result, ["thing"], 0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert drawn.any()
    assert peak < image.nbytes + h * w // 4, peak


def test_saved_image_decodes_to_the_drawing_and_unknown_formats_become_png(tmp_path):
    image = np.random.RandomState(2).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    path = save_image(str(tmp_path / "sub" / "a.png"), image)
    assert path == str(tmp_path / "sub" / "a.png")
    np.testing.assert_array_equal(cv2.imread(path)[..., ::-1], image)
    assert drawn_path(str(tmp_path / "b.xyz")) == str(tmp_path / "b.png")
    assert drawn_path(str(tmp_path / "noext")) == str(tmp_path / "noext.png")
    assert save_image(str(tmp_path / "b.xyz"), image) == str(tmp_path / "b.png")
    assert sorted(os.listdir(tmp_path)) == ["b.png", "sub"]  # no temporaries left


def test_two_writers_on_the_same_names_leave_whole_images(tmp_path):
    """Two demos drawing into one folder used to splice their PNGs. Every read while they
    run, and every final file, is exactly one writer's encoding."""
    rng = np.random.RandomState(3)
    images = [rng.randint(0, 256, (40 + 20 * k, 50, 3)).astype(np.uint8) for k in range(2)]
    encoded = [cv2.imencode(".png", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))[1].tobytes()
               for im in images]
    assert len(encoded[0]) != len(encoded[1])
    names = [str(tmp_path / f"img{i}.png") for i in range(3)]
    done = threading.Event()
    seen, errors = [], []

    def writer(k):
        try:
            for _ in range(40):
                for name in names:
                    save_image(name, images[k])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def reader():
        while not done.is_set():
            for name in names:
                if os.path.exists(name):
                    with open(name, "rb") as f:
                        seen.append(f.read())

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert not errors
    assert seen and all(data in encoded for data in seen)
    for name in names:
        with open(name, "rb") as f:
            assert f.read() in encoded
        assert cv2.imread(name) is not None
    assert sorted(os.listdir(tmp_path)) == ["img0.png", "img1.png", "img2.png"]


def test_save_into_a_path_under_a_file_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        save_image(str(tmp_path / "file" / "a.png"), np.zeros((4, 4, 3), np.uint8))


def test_a_class_keeps_its_colour_whatever_else_is_in_the_image():
    """Colour = f(class): a person is drawn in the same colour in every image and video
    frame, whatever its rank among the detections."""
    h, w = 100, 200
    image = np.full((h, w, 3), 40, np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, 40:60, 20:60] = masks[1, 60:90, 120:180] = True  # labels go above each mask
    boxes = boxes_of(masks)
    alone = {"masks": masks[1:], "labels": np.array([5]), "scores": np.array([0.9]),
             "boxes": boxes[1:]}
    second = {"masks": masks, "labels": np.array([2, 5]), "scores": np.array([0.95, 0.9]),
              "boxes": boxes}
    names = [f"class{k}" for k in range(10)]
    a = draw_instances(image, alone, names, 0.5)
    b = draw_instances(image, second, names, 0.5)
    inside5, inside2 = (75, 150), (50, 40)  # inside the masks, away from outlines and labels
    np.testing.assert_array_equal(a[inside5], b[inside5])
    assert (a[inside5] != image[inside5]).any()
    assert tuple(b[inside2]) != tuple(b[inside5])  # classes 2 and 5 differ
    assert class_color(5) == class_color(np.int64(5)) != class_color(6)
