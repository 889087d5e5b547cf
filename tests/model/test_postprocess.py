import cv2
import numpy as np
import paddle
import pytest

from config import Section
from model.postprocess import (
    cell_strides,
    get_seg_single,
    masks_to_boxes,
    matrix_nms,
    paste_masks,
    points_nms,
)
from model.postprocess_graph import decay_coefficients, mask_boxes

CFG = Section(score_thr=0.1, mask_thr=0.5, nms_pre=500, nms_kernel="gaussian", nms_sigma=2.0,
              update_thr=0.05, max_per_img=100)


def brute_force_matrix_nms(masks, labels, scores, kernel, sigma):
    """Eq. 4 of the SOLOv2 paper with explicit loops: for mask j, the minimum over
    higher-scored masks i of the same class of f(iou_ij) / f(iou_i*), where iou_i* is the
    largest IoU of mask i with any mask of its class scored above it."""
    n = len(scores)
    flat = masks.reshape(n, -1).astype(np.float64)

    def iou(a, b):
        inter = (flat[a] * flat[b]).sum()
        return inter / (flat[a].sum() + flat[b].sum() - inter)

    def f(x):
        return np.exp(-sigma * x ** 2) if kernel == "gaussian" else 1 - x

    decayed = []
    for j in range(n):
        coefficient = 1.0
        for i in range(j):
            if labels[i] != labels[j]:
                continue
            worst = max([iou(k, i) for k in range(i) if labels[k] == labels[i]], default=0.0)
            coefficient = min(coefficient, f(iou(i, j)) / f(worst))
        decayed.append(scores[j] * coefficient)
    return np.array(decayed)


def overlapping_blobs(seed, n, classes):
    """n rectangular masks on a 20x20 image, overlapping so that IoUs spread over (0, 1),
    with random labels and descending scores."""
    rng = np.random.RandomState(seed)
    masks = np.zeros((n, 20, 20), bool)
    for k in range(n):
        y, x = rng.randint(0, 12, 2)
        masks[k, y:y + rng.randint(4, 9), x:x + rng.randint(4, 9)] = True
    labels = rng.randint(0, classes, n)
    scores = np.sort(rng.uniform(0.1, 1.0, n))[::-1].astype(np.float32)
    return masks, labels, scores


def graph_matrix_nms(masks, labels, scores, kernel, sigma=2.0):
    """The dense tensor form used in the exported graph, on numpy inputs."""
    flat = paddle.to_tensor(masks.reshape(len(masks), -1).astype(np.float32))
    return scores * decay_coefficients(flat, paddle.to_tensor(labels), flat.sum(axis=1),
                                       kernel, sigma).numpy()


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("form", ["eager", "graph"])
def test_matrix_nms_matches_brute_force(kernel, form):
    masks, labels, scores = overlapping_blobs(seed=0, n=24, classes=3)
    nms = matrix_nms if form == "eager" else graph_matrix_nms
    got = nms(masks, labels, scores, kernel=kernel, sigma=2.0)
    expected = brute_force_matrix_nms(masks, labels, scores, kernel, 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got[0] == scores[0]  # nothing is above the best mask


def test_per_class_matrix_nms_agrees_with_the_dense_form():
    # Eagerly (numpy) each class is decayed on its own; the exported graph uses one dense
    # product for all classes. The same formula in two libraries: equal to float32 rounding.
    rng = np.random.RandomState(3)
    n = 60
    masks = rng.uniform(size=(n, 12, 12)) > 0.6
    labels = rng.randint(0, 5, n)
    scores = np.sort(rng.uniform(0.1, 1.0, n))[::-1].astype(np.float32)
    for kernel in ("gaussian", "linear"):
        np.testing.assert_allclose(matrix_nms(masks, labels, scores, kernel=kernel),
                                   graph_matrix_nms(masks, labels, scores, kernel),
                                   rtol=3e-7, atol=0)


def test_matrix_nms_decays_duplicates_only_within_a_class():
    mask = np.zeros((3, 8, 8), bool)
    mask[:, 2:6, 2:6] = True
    labels = np.array([1, 1, 2])
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_allclose(matrix_nms(mask, labels, scores),
                               [0.9, 0.8 * np.exp(-2.0), 0.7], rtol=1e-6)


def test_matrix_nms_of_nothing_is_empty():
    got = matrix_nms(np.zeros((0, 5, 5), bool), np.zeros(0, np.int64), np.zeros(0, np.float32))
    assert got.shape == (0,) and got.dtype == np.float32


def test_matrix_nms_rejects_unknown_kernel():
    masks, labels, scores = np.ones((2, 4, 4), bool), np.array([0, 0]), np.array([0.9, 0.8])
    with pytest.raises(ValueError, match="gaussian"):
        matrix_nms(masks, labels, scores, kernel="box")
    with pytest.raises(ValueError, match="gaussian"):
        graph_matrix_nms(masks, labels, scores, kernel="box")


def test_points_nms_keeps_only_2x2_local_maxima():
    rng = np.random.RandomState(1)
    heat = rng.uniform(0, 1, (2, 3, 7, 7)).astype(np.float32)
    got = points_nms(paddle.to_tensor(heat)).numpy()
    expected = np.zeros_like(heat)
    for n, c, i, j in np.ndindex(heat.shape):
        window = heat[n, c, max(i - 1, 0):i + 1, max(j - 1, 0):j + 1]
        if heat[n, c, i, j] == window.max():
            expected[n, c, i, j] = heat[n, c, i, j]
    np.testing.assert_array_equal(got, expected)


def _one_hot_setup(num_classes=3, e=4, h=8, w=8):
    """Mask feature with one channel per quadrant-shaped pattern, so a one-hot kernel
    selects a known mask; logits are +-10 so sigmoid is ~0 or ~1."""
    feat = np.full((e, h, w), -10.0, np.float32)
    feat[0, :4, :4] = 10   # top-left 4x4 block (16 px at stride 4)
    feat[1, :, :] = 10     # everything
    feat[2, 6:, 6:] = 10   # 2x2 block: 4 px, not above the level stride of 8
    feat[3, :4, :4] = 10   # duplicate of channel 0
    grids, strides = (2, 1), (4, 8)
    cells = sum(g * g for g in grids)
    scores = np.zeros((cells, num_classes), np.float32)
    kernels = np.zeros((cells, e), np.float32)
    return feat, scores, kernels, cell_strides(grids, strides)


def np_bilinear(image, out_h, out_w):
    """Half-pixel-centre bilinear resize of [C, H, W] written out with numpy: output pixel
    x samples input coordinate (x + 0.5) * in / out - 0.5, clamped at the borders."""
    def weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - (src - lo)
        m[np.arange(n_out), hi] += src - lo
        return m
    wy, wx = weights(image.shape[1], out_h), weights(image.shape[2], out_w)
    return np.einsum("yh,chw,xw->cyx", wy, image, wx, optimize=True)


def expected_masks(feat, channels, crop, ori):
    probs = 1 / (1 + np.exp(-feat[channels].astype(np.float64)))
    h, w = feat.shape[1:]
    up = np_bilinear(probs, 4 * h, 4 * w)[:, :crop[0], :crop[1]]
    return np_bilinear(up, *ori) > 0.5


def _run(feat, scores, kernels, strides, crop=(32, 32), ori=(64, 64), cfg=CFG):
    return get_seg_single(scores, kernels, feat, strides, crop, ori, cfg)


def test_no_candidate_gives_empty_result():
    feat, scores, kernels, strides = _one_hot_setup()
    result = _run(feat, scores, kernels, strides, ori=(50, 70))
    assert result["masks"].shape == (0, 50, 70)
    assert result["labels"].shape == result["scores"].shape == (0,)
    assert result["boxes"].shape == (0, 4)


def test_masks_not_larger_than_stride_are_dropped():
    feat, scores, kernels, strides = _one_hot_setup()
    scores[4, 0] = 0.9     # cell 4 is on the stride-8 level; its 4-px mask must go
    kernels[4, 2] = 1.0
    assert len(_run(feat, scores, kernels, strides)["scores"]) == 0


def test_selection_rescoring_nms_and_upsampling():
    feat, scores, kernels, strides = _one_hot_setup()
    scores[0, 1] = 0.9     # top-left block, class 1
    kernels[0, 0] = 1.0
    scores[1, 1] = 0.8     # the same block again, same class: Matrix NMS decays it
    kernels[1, 3] = 1.0
    scores[2, 2] = 0.6     # full image, class 2
    kernels[2, 1] = 1.0
    scores[3, 0] = 0.05    # below score_thr
    kernels[3, 1] = 1.0
    result = _run(feat, scores, kernels, strides, crop=(32, 32), ori=(64, 64))
    # maskness ~1 for these saturated masks; the duplicate keeps exp(-2) of its score.
    np.testing.assert_allclose(result["scores"], [0.9, 0.6, 0.8 * np.exp(-2.0)], rtol=1e-4)
    np.testing.assert_array_equal(result["labels"], [1, 2, 1])
    # 8x8 feature -> x4 -> 32x32 padded input == crop -> resized to 64x64: the 4x4 feature
    # block becomes (nearly) the top-left 32x32 of the original image.
    expected = expected_masks(feat, [0, 1, 3], (32, 32), (64, 64))
    np.testing.assert_array_equal(result["masks"], expected)
    assert 0.9 * 32 * 32 < expected[0].sum() < 32 * 32 and expected[1].all()
    np.testing.assert_array_equal(result["boxes"][0], [0, 0, 32, 32])
    np.testing.assert_array_equal(result["boxes"][1], [0, 0, 64, 64])


def test_crop_removes_padding_before_resizing_to_the_original():
    feat, scores, kernels, strides = _one_hot_setup()
    scores[0, 0] = 0.9
    kernels[0, 0] = 1.0    # top-left 16x16 of the 32x32 padded input
    # The image occupied only the top-left 16x16 of the padded input, original 40x40:
    # after cropping, the mask covers (nearly) the whole original image.
    result = _run(feat, scores, kernels, strides, crop=(16, 16), ori=(40, 40))
    expected = expected_masks(feat, [0], (16, 16), (40, 40))
    np.testing.assert_array_equal(result["masks"], expected)
    assert expected[0].mean() > 0.95


@pytest.mark.parametrize("size, out", [((40, 56), (160, 224)),   # the 4x upsampling
                                       ((160, 224), (97, 131)),   # down, uneven ratios
                                       ((97, 131), (300, 170)),   # up in y, down in x
                                       ((7, 5), (3, 2))])
def test_opencv_linear_resize_is_the_half_pixel_bilinear(size, out):
    # paste_masks relies on it: cv2.INTER_LINEAR on float32 = half-pixel-centre bilinear.
    image = np.random.RandomState(0).uniform(size=(3, *size)).astype(np.float32)
    got = np.stack([cv2.resize(c, out[::-1], interpolation=cv2.INTER_LINEAR) for c in image])
    np.testing.assert_allclose(got, np_bilinear(image.astype(np.float64), *out), rtol=0,
                               atol=2e-7)


def test_paste_masks_resizes_twice_then_binarises():
    rng = np.random.RandomState(1)
    probs = rng.uniform(size=(4, 10, 14)).astype(np.float32)
    crop, ori = (37, 50), (61, 83)  # crop inside the 40x56 padded input, then enlarged
    exact = np_bilinear(np_bilinear(probs.astype(np.float64), 40, 56)[:, :37, :50], *ori)
    got = paste_masks(probs, crop, ori, 0.5)
    assert got.shape == (4, *ori) and got.dtype == bool
    clear = np.abs(exact - 0.5) > 1e-6  # float32 rounding can decide only closer calls
    assert clear.mean() > 0.999
    np.testing.assert_array_equal(got[clear], exact[clear] > 0.5)
    assert paste_masks(probs[:0], crop, ori, 0.5).shape == (0, *ori)


def test_update_thr_and_max_per_img():
    feat, scores, kernels, strides = _one_hot_setup()
    scores[0, 1], kernels[0, 0] = 0.9, 1.0
    scores[1, 1], kernels[1, 3] = 0.2, 1.0   # decays to 0.2 * e^-2 = 0.027 < update_thr
    scores[2, 2], kernels[2, 1] = 0.6, 1.0
    result = _run(feat, scores, kernels, strides)
    np.testing.assert_array_equal(result["labels"], [1, 2])
    cfg = Section(**{**CFG.__dict__, "max_per_img": 1})
    result = _run(feat, scores, kernels, strides, cfg=cfg)
    np.testing.assert_array_equal(result["labels"], [1])


def test_masks_to_boxes():
    masks = np.zeros((3, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    boxes = masks_to_boxes(masks)
    np.testing.assert_array_equal(boxes, [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]])


def test_mask_boxes_in_the_graph_equal_the_numpy_boxes():
    # The eager path takes boxes from numpy masks, the exported graph from tensors.
    masks = np.random.RandomState(0).rand(6, 40, 50) > 0.995
    masks[2] = False
    masks[4, 39, 49] = True
    np.testing.assert_array_equal(mask_boxes(paddle.to_tensor(masks)).numpy(),
                                  masks_to_boxes(masks))


def random_outputs(seed, feat_hw, grids=(8, 6), classes=7, channels=40, top=0.5, scale=1.0):
    """Network outputs of the shapes get_seg_single takes, with logits around 0 so that many
    mask pixels lie close to mask_thr (``scale`` 1e-6: within a few float32 steps of it);
    category scores uniform in [0, top). 40 channels: from about 33 on, numpy's one-row
    product (matrix-vector) rounds differently from a row of a matrix product."""
    rng = np.random.RandomState(seed)
    cells = sum(g * g for g in grids)
    cate = rng.uniform(0, top, (cells, classes)).astype(np.float32)
    kernels = rng.normal(0, 1 / np.sqrt(channels), (cells, channels)).astype(np.float32)
    feat = (scale * rng.normal(0, 1, (channels, *feat_hw))).astype(np.float32)
    return cate, kernels, feat, cell_strides(grids, (4, 8))


# (seed, mask feature h x w, crop, original size, nms_pre, scoring batch, rescore chunk,
#  max_per_img, Matrix NMS kernel, threads, logit scale): sizes that fit no vector width,
# crops equal to the original (the resize skipped), smaller and larger than it, batches of
# one row (numpy's matrix-vector product), chunks that do not divide the batch, more
# threads than masks, and probabilities that round to either side of mask_thr.
PREVIOUS_CASES = [
    (0, (10, 14), (40, 56), (40, 56), 25, 7, 16, 40, "gaussian", 1, 1.0),
    (1, (13, 7), (50, 27), (101, 53), 9, 1, 3, 100, "gaussian", 2, 1.0),
    (2, (33, 41), (129, 161), (77, 95), 300, 128, 5, 100, "linear", 3, 1.0),
    (3, (1, 5), (4, 17), (9, 40), 30, 4, 16, 10, "gaussian", 2, 1.0),
    (4, (64, 96), (250, 383), (300, 451), 500, 128, 16, 100, "gaussian", 2, 1.0),
    (5, (31, 17), (121, 65), (121, 65), 2000, 128, 1, 100, "linear", 1, 1.0),
    (6, (24, 36), (96, 144), (96, 144), 40, 16, 16, 100, "gaussian", 2, 1e-6),
]


@pytest.mark.parametrize("seed, feat_hw, crop, ori, nms_pre, batch, chunk, max_per_img, "
                         "kernel, threads, scale", PREVIOUS_CASES)
def test_equals_the_previous_implementation_bit_for_bit(seed, feat_hw, crop, ori, nms_pre,
                                                        batch, chunk, max_per_img, kernel,
                                                        threads, scale, monkeypatch):
    import model.postprocess
    from tests.model import previous_postprocess

    monkeypatch.setattr(model.postprocess, "SCORING_BATCH", batch)
    monkeypatch.setattr(previous_postprocess, "SCORING_BATCH", batch)
    monkeypatch.setattr(model.postprocess, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(model.postprocess, "THREADED_SIZE", 0)  # threads even for small ones
    grids = (12, 8) if seed == 4 else (8, 6)
    cate, kernels, feat, strides = random_outputs(seed, feat_hw, grids, scale=scale)
    cfg = Section(**{**CFG.__dict__, "nms_pre": nms_pre, "max_per_img": max_per_img,
                     "nms_kernel": kernel})
    before = previous_postprocess.get_seg_single(cate, kernels, feat, strides, crop, ori, cfg)
    after = get_seg_single(cate, kernels, feat, strides, crop, ori, cfg, threads)
    assert len(before["scores"]) > 3
    for key in ("masks", "labels", "scores", "boxes"):
        assert after[key].dtype == before[key].dtype, key
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("top", [0.0, 0.1003])
def test_no_or_one_candidate_as_before(top):
    from tests.model import previous_postprocess

    cate, kernels, feat, strides = random_outputs(7, (12, 9), top=top)
    if top:
        cate[:] = 0
        cate[5, 2] = top
    before = previous_postprocess.get_seg_single(cate, kernels, feat, strides, (48, 33),
                                                 (60, 41), CFG)
    after = get_seg_single(cate, kernels, feat, strides, (48, 33), (60, 41), CFG, 2)
    assert len(after["scores"]) == (1 if top else 0)
    for key in ("masks", "labels", "scores", "boxes"):
        assert after[key].shape == before[key].shape and after[key].dtype == before[key].dtype
        np.testing.assert_array_equal(after[key], before[key])
