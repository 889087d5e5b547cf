"""Both post-processing forms compute masks only for the candidates that can still reach the
best nms_pre after re-scoring: the eager one in batches until the next candidate is below
the bar, the graph one for 2 * nms_pre first and then for the rest that can still matter.
Against a plain numpy version that scores every candidate, with far more candidates than
nms_pre, the detections must be the same."""

import numpy as np
import paddle
import pytest

import model.postprocess
from config import Section
from model.postprocess import cell_strides, get_seg_single
from model.postprocess_graph import segment
from tests.model.test_postprocess import brute_force_matrix_nms


def numpy_segment(cate, kernels, feat, strides, cfg):
    """Steps 1-5 of the reference get_seg_single on every candidate, then the update_thr
    and max_per_img selection: (labels, scores) best first."""
    cells, labels = np.nonzero(cate > cfg.score_thr)
    scores = cate[cells, labels].astype(np.float64)
    logits = kernels[cells].astype(np.float64) @ feat.reshape(len(feat), -1)
    probs = 1 / (1 + np.exp(-logits))
    masks = probs > cfg.mask_thr
    area = masks.sum(axis=1)
    keep = area > strides[cells]
    probs, masks, area, scores, labels = probs[keep], masks[keep], area[keep], scores[keep], \
        labels[keep]
    scores = scores * (probs * masks).sum(axis=1) / area
    order = np.argsort(-scores, kind="stable")[:cfg.nms_pre]
    decayed = brute_force_matrix_nms(masks[order], labels[order], scores[order],
                                     cfg.nms_kernel, cfg.nms_sigma)
    keep = np.flatnonzero(decayed >= cfg.update_thr)
    best = keep[np.argsort(-decayed[keep], kind="stable")][:cfg.max_per_img]
    return labels[order][best], decayed[best]


def random_outputs(seed):
    rng = np.random.RandomState(seed)
    grids, level_strides = (8, 6), (4, 8)
    cells = sum(g * g for g in grids)
    cate = rng.uniform(0, 0.6, (cells, 12)).astype(np.float32)
    kernels = rng.normal(0, 1, (cells, 6)).astype(np.float32)
    feat = rng.normal(0, 1, (6, 10, 14)).astype(np.float32)
    return cate, kernels, feat, cell_strides(grids, level_strides)


def settings(nms_pre):
    return Section(score_thr=0.1, mask_thr=0.5, nms_pre=nms_pre, nms_kernel="gaussian",
                   nms_sigma=2.0, update_thr=0.05, max_per_img=40)


@pytest.mark.parametrize("seed, nms_pre", [(0, 10), (1, 25), (2, 300)])
def test_graph_form_matches_scoring_every_candidate(seed, nms_pre):
    cate, kernels, feat, strides = random_outputs(seed)
    cfg = settings(nms_pre)
    assert (cate > cfg.score_thr).sum() > 10 * nms_pre or nms_pre == 300
    masks, labels, scores, _ = segment(paddle.to_tensor(cate), paddle.to_tensor(kernels),
                                       paddle.to_tensor(feat), paddle.to_tensor(strides),
                                       (40, 56), (40, 56), cfg)
    expected_labels, expected_scores = numpy_segment(cate, kernels, feat, strides, cfg)
    assert len(expected_labels) > 5
    np.testing.assert_array_equal(labels.numpy(), expected_labels)
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-4)
    assert masks.shape[0] == len(expected_labels)


@pytest.mark.parametrize("seed, nms_pre, batch", [(0, 10, 3), (1, 25, 128), (2, 300, 7),
                                                  (3, 2000, 128)])
def test_eager_form_matches_scoring_every_candidate(seed, nms_pre, batch, monkeypatch):
    monkeypatch.setattr(model.postprocess, "SCORING_BATCH", batch)
    cate, kernels, feat, strides = random_outputs(seed)
    cfg = settings(nms_pre)
    result = get_seg_single(cate, kernels, feat, strides, (40, 56), (40, 56), cfg)
    expected_labels, expected_scores = numpy_segment(cate, kernels, feat, strides, cfg)
    assert len(expected_labels) > 5
    np.testing.assert_array_equal(result["labels"], expected_labels)
    np.testing.assert_allclose(result["scores"], expected_scores, rtol=1e-5)
    assert result["masks"].shape == (len(expected_labels), 40, 56)


def test_eager_form_stops_scoring_below_the_bar(monkeypatch):
    # With 10 of ~1000 candidates wanted, batching must stop long before the last one.
    scored = []
    rescore = model.postprocess.rescore

    def counting(kernels, *args):
        scored.append(len(kernels))
        return rescore(kernels, *args)

    monkeypatch.setattr(model.postprocess, "rescore", counting)
    monkeypatch.setattr(model.postprocess, "SCORING_BATCH", 5)
    cate, kernels, feat, strides = random_outputs(0)
    get_seg_single(cate, kernels, feat, strides, (40, 56), (40, 56), settings(10))
    assert scored[0] == 10 and 10 < sum(scored) < (cate > 0.1).sum() / 4
