"""Our training pipeline and targets against the references', on real photos.

The photos (tools/dev/make_target_goldens.reference_photos) are resized to sizes that are
not multiples of 32, flipped, colour-distorted and cropped (PaddleDetection's steps), and
batched with photos of another shape, so that batch padding exceeds an image's own.
Everything is compared exactly: the network input (sha256), the transformed boxes (values
and dtype), the positive cells, the category grids and every target mask pixel; the
losses on seeded predictions to float32 summation-order precision.

Against tests/fixtures/goldens/targets_*.npz (SOLO and PaddleDetection 2.6 outputs, made
by tools/dev/make_target_goldens.py) these run anywhere; the last tests rerun
PaddleDetection's own ops, with other draws, where ppdet is installed.
"""

import hashlib
import os

import numpy as np
import paddle
import pytest

from model.loss import SOLOv2Loss
from tools.data import boxes as box_ops
from tools.data.targets import TargetCollator
from tools.data.transforms import color_distort, hflip, normalize_chw, random_crop, resize
from tools.dev import make_target_goldens as goldens

MEAN, STD = goldens.MEAN, goldens.STD


@pytest.fixture(scope="module")
def photos():
    return goldens.reference_photos()


def load(name):
    with np.load(os.path.join(goldens.DEFAULT_OUTPUT, f"targets_{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def ours_solo(photos, batch, max_size):
    """Our 'mmcv' steps with SOLO's choices: (photo, short side, flip) per image."""
    samples = []
    for p, short, flip in batch:
        rgb, masks, xywh, labels = photos[p]
        boxes = box_ops.from_coco(xywh, *rgb.shape[:2], "mmcv")
        image, masks, boxes = resize(rgb, masks, boxes, short, max_size, "mmcv")
        if flip:
            image, masks, boxes = hflip(image, masks, boxes, "mmcv")
        samples.append({"image": normalize_chw(image, MEAN, STD, "mmcv"), "boxes": boxes,
                        "masks": np.ascontiguousarray(masks), "labels": labels})
    return samples


def ours_ppdet2(photos, batch):
    """Our 'ppdet2' steps: colour distortion and crop from RandomState(seed), as
    PaddleDetection's draw from np.random.seed(seed); then the given size and flip."""
    samples = []
    for p, seed, short, flip in batch:
        rgb, masks, xywh, labels = photos[p]
        rng = np.random.RandomState(seed)
        boxes = box_ops.from_coco(xywh, *rgb.shape[:2], "ppdet2")
        image = color_distort(rgb, rng)
        image, masks, boxes, labels = random_crop(image, masks, boxes, labels, rng, "ppdet2")
        image, masks, boxes = resize(image, masks, boxes, short, goldens.PPDET2_MAX, "ppdet2")
        if flip:
            image, masks, boxes = hflip(image, masks, boxes, "ppdet2")
        samples.append({"image": normalize_chw(image, MEAN, STD, "ppdet2"), "boxes": boxes,
                        "masks": np.ascontiguousarray(masks), "labels": labels})
    return samples


def assert_same_as(golden, prefix, samples, ranges):
    """Our collated targets of ``samples`` equal the golden's of batch ``prefix``."""
    batch = TargetCollator(goldens.GRIDS, ranges, 0.2)(samples)
    assert tuple(batch["images"].shape[2:]) == tuple(golden[prefix + "pad_hw"])
    for i, sample in enumerate(samples):
        ref = f"{prefix}{i}."
        image = sample["image"]
        assert image.shape == tuple(golden[ref + "image_shape"])
        if hashlib.sha256(image.tobytes()).digest() != golden[ref + "image_sha"].tobytes():
            # Bit-equal where the goldens were made (and against ppdet's ops below); another
            # BLAS kernel may round the hue rotation's 3-term dot products differently.
            np.testing.assert_allclose(image.ravel()[::goldens.THIN],
                                       golden[ref + "image_thin"], rtol=1e-6, atol=1e-6)
        assert sample["boxes"].dtype == golden[ref + "boxes"].dtype
        np.testing.assert_array_equal(sample["boxes"], golden[ref + "boxes"])
        np.testing.assert_array_equal(batch["ins_index"][i], golden[ref + "index"])
        cates = np.concatenate([level[i].ravel() for level in batch["cate_labels"]])
        np.testing.assert_array_equal(cates, golden[ref + "cates"])
        np.testing.assert_array_equal(batch["ins_masks"][i], goldens.unpack_masks(golden, ref))
    return batch


def losses(batch, dice_average):
    n, pad_hw = len(batch["ins_index"]), batch["images"].shape[2:]
    cates, kernels, feat = goldens.seeded_predictions(n, pad_hw, goldens.GRIDS)
    targets = {"cate_labels": [paddle.to_tensor(c) for c in batch["cate_labels"]],
               "ins_index": [paddle.to_tensor(i) for i in batch["ins_index"]],
               "ins_masks": [paddle.to_tensor(m) for m in batch["ins_masks"]],
               "num_pos": paddle.to_tensor(batch["num_pos"])}
    out = SOLOv2Loss(goldens.NUM_CLASSES, dice_average=dice_average)(
        [paddle.to_tensor(c) for c in cates], [paddle.to_tensor(k) for k in kernels],
        paddle.to_tensor(feat), targets)
    return float(out["loss_ins"]), float(out["loss_cate"])


def add_empty_target(samples, style):
    """The loss cases' batch: image 0 gets the bar whose stride-4 target is empty."""
    first = dict(samples[0])
    mask, xywh = goldens.empty_target_instance(first["masks"].shape[1:])
    box = box_ops.from_coco(xywh[None], *mask.shape, style)
    first["masks"] = np.concatenate([first["masks"], mask[None]])
    first["boxes"] = np.concatenate([first["boxes"], box.astype(first["boxes"].dtype)])
    first["labels"] = np.concatenate([first["labels"], [5]])
    return [first] + samples[1:]


# ------------------------------------------------------------------------ goldens
@pytest.mark.parametrize("case", sorted(goldens.SOLO_CASES))
def test_solo_pipeline_and_targets_match_solo(photos, case):
    golden = load("solo")
    ranges, max_size, batches = goldens.SOLO_CASES[case]
    for b, batch in enumerate(batches):
        assert_same_as(golden, f"{case}.b{b}.", ours_solo(photos, batch, max_size), ranges)


def test_ppdet2_pipeline_and_targets_match_paddledetection(photos):
    golden = load("ppdet2")
    for b, batch in enumerate(goldens.PPDET2_BATCHES):
        assert_same_as(golden, f"b{b}.", ours_ppdet2(photos, batch), goldens.PPDET2_RANGES)


def test_solo_dice_average_is_over_all_positives(photos):
    golden = load("solo")
    case, b = goldens.SOLO_LOSS
    ranges, max_size, batches = goldens.SOLO_CASES[case]
    samples = add_empty_target(ours_solo(photos, batches[b], max_size), "mmcv")
    batch = TargetCollator(goldens.GRIDS, ranges, 0.2)(samples)
    empty = [i for i, m in enumerate(batch["ins_masks"][0]) if not m.any()]
    assert empty  # the bar is a positive whose target is empty
    loss_ins, loss_cate = losses(batch, "all")
    assert loss_ins == pytest.approx(float(golden["loss_ins"]), rel=2e-6)
    assert loss_cate == pytest.approx(float(golden["loss_cate"]), rel=2e-6)
    assert losses(batch, "nonempty")[0] != pytest.approx(float(golden["loss_ins"]), rel=1e-3)


def test_ppdet2_dice_average_is_over_nonempty_targets(photos):
    golden = load("ppdet2")
    batch_spec = goldens.PPDET2_BATCHES[goldens.PPDET2_LOSS]
    samples = add_empty_target(ours_ppdet2(photos, batch_spec), "ppdet2")
    batch = TargetCollator(goldens.GRIDS, goldens.PPDET2_RANGES, 0.2)(samples)
    assert any(not m.any() for m in batch["ins_masks"][0])
    loss_ins, loss_cate = losses(batch, "nonempty")
    assert loss_ins == pytest.approx(float(golden["loss_ins"]), rel=2e-6)
    assert loss_cate == pytest.approx(float(golden["loss_cate"]), rel=2e-6)
    assert losses(batch, "all")[0] != pytest.approx(float(golden["loss_ins"]), rel=1e-3)


# ------------------------------------------------------- PaddleDetection's own ops
# Other draws than the golden's: every photo, crops found and not, both flips.
DIRECT_BATCHES = [[(p, 100 + 10 * k + p, short, (k + p) % 2 == 0) for p in range(3)]
                  for k, short in enumerate((352, 384, 448, 512, 608, 800))]


def test_ppdet2_direct(photos):
    pytest.importorskip("ppdet")
    reference = goldens.ppdet2_outputs(DIRECT_BATCHES, loss_batch=0)
    for b, batch in enumerate(DIRECT_BATCHES):
        samples = ours_ppdet2(photos, batch)
        assert_same_as(reference, f"b{b}.", samples, goldens.PPDET2_RANGES)
        for i, sample in enumerate(samples):  # same machine, same BLAS: bit for bit
            digest = hashlib.sha256(sample["image"].tobytes()).digest()
            assert digest == reference[f"b{b}.{i}.image_sha"].tobytes()
    samples = add_empty_target(ours_ppdet2(photos, DIRECT_BATCHES[0]), "ppdet2")
    batch = TargetCollator(goldens.GRIDS, goldens.PPDET2_RANGES, 0.2)(samples)
    assert losses(batch, "nonempty")[0] == pytest.approx(float(reference["loss_ins"]),
                                                         rel=2e-6)
