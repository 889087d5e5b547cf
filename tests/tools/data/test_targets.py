"""SOLOv2 target assignment on hand-built masks; expected cells worked out by hand."""

import cv2
import numpy as np
import pytest

from tools.data.targets import TargetCollator, downsample_mask, image_targets

GRIDS = (40, 36, 24, 16, 12)
# Config 1 (SOLOv2-Light 448) scale ranges: 40 px falls in levels 0 and 1.
RANGES = ((1, 56), (28, 112), (56, 224), (112, 448), (224, 896))
OFFSETS = (0, 1600, 1600 + 1296, 1600 + 1296 + 576, 1600 + 1296 + 576 + 256)


def square(h, w, top, left, size):
    mask = np.zeros((h, w), np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask


def cells(level, rows, cols):
    return [OFFSETS[level] + i * GRIDS[level] + j for i in rows for j in cols]


def test_square_on_two_levels_3x3_cells_in_grid_order():
    # 40 x 40 square, rows 20..59, cols 60..99 of a 128 x 128 image: centre (39.5, 79.5).
    # Level 0, S=40: centre cell (12, 24); sigma box +-4 px spans rows 11..13, cols 23..26,
    #   clipped to the 3 x 3 around the centre: cols 23..25.
    # Level 1, S=36: centre cell (11, 22); box rows 9..12 -> 10..12, cols 21..23.
    mask = square(128, 128, 20, 60, 40)
    cates, index, masks = image_targets(mask[None], np.array([2]), (128, 128), GRIDS, RANGES,
                                        0.2)
    expected = cells(0, range(11, 14), range(23, 26)) + cells(1, range(10, 13), range(21, 24))
    assert index.tolist() == expected
    assert [int((c > 0).sum()) for c in cates] == [9, 9, 0, 0, 0]
    assert (cates[0][11:14, 23:26] == 3).all() and (cates[1][10:13, 21:24] == 3).all()
    # Every positive carries the mask at stride 4: rows 5..14, cols 15..24 of 32 x 32.
    assert masks.shape == (18, 32, 32)
    small = np.zeros((32, 32), np.uint8)
    small[5:15, 15:25] = 1
    assert all(np.array_equal(m, small) for m in masks)


def test_small_instance_gets_only_its_centre_cell():
    # 10 x 10 square at rows/cols 64..73: centre 68.5 -> cell 21 on S=40; the +-1 px
    # centre region stays inside that cell. sqrt(area) = 10: level 0 only.
    mask = square(128, 128, 64, 64, 10)
    cates, index, _ = image_targets(mask[None], np.array([0]), (128, 128), GRIDS, RANGES, 0.2)
    assert index.tolist() == [21 * 40 + 21]
    assert cates[0][21, 21] == 1 and sum(int((c > 0).sum()) for c in cates) == 1


def test_centre_of_mass_not_box_centre():
    # An L shape whose mass sits in its left bar: box cols 30..65 (centre 48 -> cell 15 on
    # S=40), centre of mass col (480 * 35.5 + 144 * 53.5) / 624 = 39.65 -> cell 12.
    mask = np.zeros((128, 128), np.uint8)
    mask[40:80, 30:42] = 1      # tall left bar, 480 px
    mask[74:80, 42:66] = 1      # foot, 144 px
    _, index, _ = image_targets(mask[None], np.array([0]), (128, 128), GRIDS, RANGES, 0.2)
    level0_cols = {i % 40 for i in index if i < 1600}
    assert level0_cols == {11, 12, 13}


def test_cells_are_relative_to_the_padded_batch_size():
    # The same square in a 128 x 128 image padded to 128 x 256 by a wider batch partner:
    # columns are now fractions of 256, rows unchanged.
    mask = square(128, 128, 20, 60, 40)
    _, index, masks = image_targets(mask[None], np.array([0]), (128, 256), GRIDS, RANGES, 0.2)
    level0 = [i for i in index if i < 1600]
    assert sorted({i // 40 for i in level0}) == [11, 12, 13]
    assert sorted({i % 40 for i in level0}) == [11, 12, 13]  # centre col 79.5/256*40 = 12.4
    assert masks.shape[1:] == (32, 64)


def test_image_without_instances_and_empty_masks():
    cates, index, masks = image_targets(np.zeros((0, 64, 96), np.uint8), np.zeros(0, np.int64),
                                        (64, 96), GRIDS, RANGES, 0.2)
    assert index.shape == (0,) and masks.shape == (0, 16, 24)
    assert all(c.shape == (s, s) and not c.any() for c, s in zip(cates, GRIDS))
    # An all-zero mask (e.g. cropped away) is not a positive anywhere.
    cates, index, _ = image_targets(np.zeros((1, 64, 96), np.uint8), np.array([1]), (64, 96),
                                    GRIDS, RANGES, 0.2)
    assert index.size == 0 and not any(c.any() for c in cates)


def test_large_instance_goes_to_coarse_levels_only():
    # 300 x 300 in a 320 x 320 image: sqrt = 300 -> levels 2 (56-224)? no; 3 (112-448) and
    # 4 (224-896) yes.
    mask = square(320, 320, 10, 10, 300)
    cates, index, _ = image_targets(mask[None], np.array([0]), (320, 320), GRIDS, RANGES, 0.2)
    counts = [int((c > 0).sum()) for c in cates]
    assert counts[:3] == [0, 0, 0] and counts[3] == 9 and counts[4] == 9
    assert all(i >= OFFSETS[3] for i in index)


def quarter_by_hand(padded):
    """OpenCV bilinear at exactly 1/4 on 0/1 pixels: output (i, j) averages input rows
    4i+1, 4i+2 and columns 4j+1, 4j+2, rounded half up."""
    votes = sum(padded[1 + a::4, 1 + b::4].astype(int) for a in (0, 1) for b in (0, 1))
    return (votes >= 2).astype(np.uint8)


def test_downsample_mask_pads_to_the_batch_then_takes_exactly_a_quarter():
    rng = np.random.RandomState(0)
    mask = (rng.rand(130, 98) > 0.6).astype(np.uint8)  # not a multiple of 32 or 4
    small = downsample_mask(mask, (160, 128))
    assert small.shape == (40, 32) and small.dtype == np.uint8
    padded = np.zeros((160, 128), np.uint8)
    padded[:130, :98] = mask
    np.testing.assert_array_equal(small, quarter_by_hand(padded))
    assert not small[33:].any() and not small[:, 25:].any()  # only zeros read there
    # The batch's extra padding adds only zeros: padding to the image's own multiple of 32
    # (SOLO) and then filling up with zeros gives the same target.
    own = downsample_mask(mask, (160, 128 + 64))
    np.testing.assert_array_equal(own[:, :32], small)
    assert not own[:, 32:].any()
    # The unpadded mask shrunk to round(size / 4) samples other pixels: not the same.
    unpadded = cv2.resize(mask, (25, 33), interpolation=cv2.INTER_LINEAR)
    assert (unpadded != small[:33, :25]).sum() > 20


def test_levels_and_centre_region_come_from_the_annotation_box():
    # A 10 x 10 mask (rows/cols 64..73, centre of mass 68.5) whose annotation box is 60 x 60:
    # sqrt = 60 puts it on levels 1 (28..112) and 2 (56..224), and the centre region is
    # +-6 px (0.2 * 60 / 2): rows 62.5..74.5.
    # Level 1, S=36: centre cell 68.5 / 128 * 36 = 19.3 -> 19; 62.5 -> 17.6 -> 17, 74.5
    #   -> 20.95 -> 20; clipped to 19 +- 1: rows and cols 18..20.
    # Level 2, S=24: 12.8 -> 12; 11.7 -> 11, 13.97 -> 13: rows and cols 11..13.
    mask = square(128, 128, 64, 64, 10)
    box = np.array([[40.0, 40.0, 100.0, 100.0]], np.float32)
    cates, index, _ = image_targets(mask[None], np.array([0]), (128, 128), GRIDS, RANGES, 0.2,
                                    boxes=box)
    assert index.tolist() == cells(1, range(18, 21), range(18, 21)) + cells(
        2, range(11, 14), range(11, 14))
    assert [int((c > 0).sum()) for c in cates] == [0, 9, 9, 0, 0]
    # Without boxes the mask's own box (10 px, +-1 px region) gives one level-0 cell.
    _, index, _ = image_targets(mask[None], np.array([0]), (128, 128), GRIDS, RANGES, 0.2)
    assert index.tolist() == [21 * 40 + 21]


def test_degenerate_box_is_in_no_level():
    # A zero-height or inverted box (what the references drop at load) gives no target.
    mask = square(64, 64, 10, 10, 20)
    for box in ([10.0, 10.0, 30.0, 10.0], [10.0, 10.0, 9.5, 30.0]):
        cates, index, _ = image_targets(mask[None], np.array([0]), (64, 64), GRIDS, RANGES,
                                        0.2, boxes=np.array([box], np.float32))
        assert index.size == 0 and not any(c.any() for c in cates)


def test_collator_pads_and_counts_positive_cells():
    collate = TargetCollator(GRIDS, RANGES, 0.2)
    a = {"image": np.ones((3, 100, 120), np.float32),
         "masks": square(100, 120, 20, 60, 40)[None], "labels": np.array([1])}
    b = {"image": np.ones((3, 64, 64), np.float32),
         "masks": np.zeros((0, 64, 64), np.uint8), "labels": np.zeros(0, np.int64)}
    batch = collate([a, b])
    assert batch["images"].shape == (2, 3, 128, 128)
    assert (batch["images"][1, :, 64:, :] == 0).all()
    assert [c.shape for c in batch["cate_labels"]] == [(2, s, s) for s in GRIDS]
    assert batch["ins_index"][0].size == 18 and batch["ins_index"][1].size == 0
    assert batch["ins_masks"][0].shape == (18, 32, 32)
    assert batch["num_pos"].tolist() == [18]


def test_collator_takes_the_samples_boxes():
    mask = square(100, 120, 20, 60, 40)
    sample = {"image": np.ones((3, 100, 120), np.float32), "masks": mask[None],
              "labels": np.array([1])}
    wide = dict(sample, boxes=np.array([[0.0, 0.0, 119.0, 99.0]], np.float32))
    counts = [int((c > 0).sum()) for c in TargetCollator(GRIDS, RANGES, 0.2)([wide])[
        "cate_labels"]]
    # sqrt(119 * 99) = 108.5: level 1 (28..112) and 2 (56..224), not level 0 as the mask's.
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > 0


def test_center_of_mass_is_the_pixel_mean_bit_for_bit():
    """Integer sums divided once equal numpy's mean of the pixel indices (and scipy's
    center_of_mass, which PaddleDetection calls) exactly, on masks of every density."""
    from tools.data.targets import center_of_mass

    rng = np.random.RandomState(0)
    for _ in range(300):
        h, w = rng.randint(1, 200, 2)
        mask = (rng.rand(h, w) < rng.uniform(0.001, 0.9)).astype(np.uint8)
        mask[rng.randint(h), rng.randint(w)] = 1
        ys, xs = np.nonzero(mask)
        assert center_of_mass(mask) == (ys.mean(), xs.mean())
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = (rng.rand(97, 131) < 0.3).astype(np.uint8)
    assert center_of_mass(mask) == tuple(ndimage.center_of_mass(mask))
