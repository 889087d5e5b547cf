import math

import numpy as np
import paddle
import pytest

from model.loss import SOLOv2Loss, dice_loss, sigmoid_focal_loss

GRIDS = (4, 3, 2, 2, 1)


def test_dice_known_values():
    ones = paddle.ones([1, 2, 2])
    zeros = paddle.zeros([1, 2, 2])
    half = paddle.full([1, 2, 2], 0.5)
    # perfect: 1 - 2*4 / (4 + 4 + 0.002); nothing predicted: 1 - 0; p = 0.5 everywhere:
    # 1 - 2*2 / (1 + 0.001 + 4 + 0.001).
    np.testing.assert_allclose(dice_loss(ones, ones).numpy(), [1 - 8 / 8.002], atol=1e-7)
    np.testing.assert_allclose(dice_loss(zeros, ones).numpy(), [1.0], rtol=1e-6)
    np.testing.assert_allclose(dice_loss(half, ones).numpy(), [1 - 4 / 5.002], rtol=1e-6)


def test_focal_known_values():
    logits = paddle.to_tensor([[0.0, 0.0], [3.0, -3.0]])
    onehot = paddle.to_tensor([[1.0, 0.0], [1.0, 0.0]])
    out = sigmoid_focal_loss(logits, onehot).numpy()
    p = 1 / (1 + math.exp(-3.0))
    expected = [[0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)],
                [0.25 * (1 - p) ** 2 * -math.log(p), 0.75 * (1 - p) ** 2 * -math.log(p)]]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    # Large logits stay finite.
    big = sigmoid_focal_loss(paddle.to_tensor([[100.0, -100.0]]), paddle.to_tensor([[0.0, 1.0]]))
    assert np.isfinite(big.numpy()).all()


def outputs(n=2, c=3, e=4, h=8, w=8, seed=0):
    rng = np.random.RandomState(seed)
    cates = [paddle.to_tensor(rng.randn(n, c, s, s).astype("float32"), stop_gradient=False)
             for s in GRIDS]
    kernels = [paddle.to_tensor(rng.randn(n, e, s, s).astype("float32"), stop_gradient=False)
               for s in GRIDS]
    feat = paddle.to_tensor(rng.rand(n, e, h, w).astype("float32"), stop_gradient=False)
    return cates, kernels, feat


def empty_targets(n=2, h=8, w=8):
    return {"cate_labels": [paddle.zeros([n, s, s], "int64") for s in GRIDS],
            "ins_index": [paddle.zeros([0], "int64") for _ in range(n)],
            "ins_masks": [paddle.zeros([0, h, w], "uint8") for _ in range(n)],
            "num_pos": paddle.to_tensor([0], "int64")}


def test_batch_without_instances_is_finite_and_reaches_every_output():
    cates, kernels, feat = outputs()
    losses = SOLOv2Loss(num_classes=3)(cates, kernels, feat, empty_targets())
    assert float(losses["loss_ins"]) == 0.0
    # Only background: focal loss of every logit against 0, divided by 0 + 1.
    logits = np.concatenate([c.numpy().transpose(0, 2, 3, 1).reshape(-1, 3) for c in cates])
    p = 1 / (1 + np.exp(-logits))
    expected = (0.75 * p ** 2 * -np.log(1 - p)).sum()
    np.testing.assert_allclose(float(losses["loss_cate"]), expected, rtol=1e-4)
    losses["loss"].backward()
    for t in cates + kernels + [feat]:
        assert t.grad is not None and np.isfinite(t.grad.numpy()).all()


@pytest.mark.parametrize("dice_average", ["nonempty", "all"])
def test_mask_loss_matches_per_instance_dynamic_conv(dice_average):
    cates, kernels, feat = outputs()
    rng = np.random.RandomState(1)
    targets = empty_targets()
    # Image 0: cell 5 of level 0 (row 1, col 1) and cell 16 + 4 = level 1 (1, 1);
    # image 1: one positive on level 4's only cell (index 16 + 9 + 4 + 4 = 33), whose target
    # is empty: it counts for 'all' (SOLO), not for 'nonempty' (PaddleDetection).
    masks0 = (rng.rand(2, 8, 8) > 0.5).astype("uint8")
    targets["ins_index"] = [paddle.to_tensor([5, 20]), paddle.to_tensor([33])]
    targets["ins_masks"] = [paddle.to_tensor(masks0), paddle.zeros([1, 8, 8], "uint8")]
    targets["cate_labels"][0][0, 1, 1] = 2
    targets["cate_labels"][1][0, 1, 1] = 1
    targets["num_pos"] = paddle.to_tensor([2])
    losses = SOLOv2Loss(num_classes=3, dice_average=dice_average)(cates, kernels, feat, targets)

    f = feat.numpy()
    expected = []
    cases = [(0, (0, 1, 1), masks0[0]), (0, (1, 1, 1), masks0[1]),
             (1, (4, 0, 0), np.zeros((8, 8)))]
    for image, (level, i, j), target in cases:
        if dice_average == "nonempty" and not target.any():
            continue
        kernel = kernels[level].numpy()[image, :, i, j]
        prob = 1 / (1 + np.exp(-np.tensordot(kernel, f[image], axes=1)))
        inter = (prob * target).sum()
        expected.append(1 - 2 * inter / ((prob ** 2).sum() + 0.001 + target.sum() + 0.001))
    assert len(expected) == (2 if dice_average == "nonempty" else 3)
    np.testing.assert_allclose(float(losses["loss_ins"]), 3.0 * np.mean(expected), rtol=1e-5)

    # Category loss: the two positive cells have one-hot targets, normalised by 2 + 1.
    total = 0.0
    for level, c in enumerate(cates):
        logits = c.numpy()
        labels = targets["cate_labels"][level].numpy()
        onehot = np.eye(4)[labels][..., 1:].transpose(0, 3, 1, 2)
        p = 1 / (1 + np.exp(-logits))
        ce = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
        p_t = p * onehot + (1 - p) * (1 - onehot)
        alpha = 0.25 * onehot + 0.75 * (1 - onehot)
        total += (alpha * (1 - p_t) ** 2 * ce).sum()
    np.testing.assert_allclose(float(losses["loss_cate"]), total / 3.0, rtol=1e-4)
    np.testing.assert_allclose(float(losses["loss"]),
                               float(losses["loss_ins"]) + float(losses["loss_cate"]), rtol=1e-6)


@pytest.mark.parametrize("image", [0, 1])
def test_positives_in_only_one_image(image):
    cates, kernels, feat = outputs()
    targets = empty_targets()
    targets["ins_index"][image] = paddle.to_tensor([0])
    targets["ins_masks"][image] = paddle.ones([1, 8, 8], "uint8")
    targets["num_pos"] = paddle.to_tensor([1])
    losses = SOLOv2Loss(num_classes=3)(cates, kernels, feat, targets)
    assert 0 < float(losses["loss_ins"]) <= 3.0
    losses["loss"].backward()
    assert np.abs(kernels[0].grad.numpy()[image, :, 0, 0]).sum() > 0
    assert np.abs(kernels[0].grad.numpy()[1 - image]).sum() == 0


def test_dice_average_is_each_references_on_an_empty_target():
    """PaddleDetection's own SOLOv2Loss against 'nonempty' (where ppdet is installed); the
    SOLO side is tests/tools/data/test_targets_reference.py (golden of SOLO's loss)."""
    solov2_loss = pytest.importorskip("ppdet.modeling.losses.solov2_loss")
    rng = np.random.RandomState(3)
    logits = rng.randn(3, 8, 8).astype("float32")  # three positives' predicted masks
    targets = (rng.rand(3, 8, 8) > 0.5).astype("uint8")
    targets[1] = 0  # the middle one's target vanished at stride 4
    # One 2 x 2 level, one image: the kernel of cell p < 3 is the one-hot e_p and the mask
    # feature holds the three logit maps, so the dynamic convolution gives back ``logits``.
    kernel = np.zeros((1, 3, 2, 2), "float32")
    for p in range(3):
        kernel[0, p, p // 2, p % 2] = 1.0
    feat = paddle.to_tensor(logits[None])
    ours = {}
    for average in ("all", "nonempty"):
        loss = SOLOv2Loss(num_classes=3, dice_average=average)
        ours[average] = float(loss.mask_loss([paddle.to_tensor(kernel)], feat,
                                             [paddle.to_tensor([0, 1, 2])],
                                             [paddle.to_tensor(targets)]))
    reference, _ = solov2_loss.SOLOv2Loss(ins_loss_weight=1.0)(
        [paddle.to_tensor(logits)], [paddle.to_tensor(targets)], paddle.zeros([4, 3]),
        paddle.zeros([4], "int64"), paddle.to_tensor(3.0))
    reference = float(reference.numpy().ravel()[0])
    assert ours["nonempty"] == pytest.approx(reference, rel=1e-6)
    assert ours["all"] != pytest.approx(reference, rel=1e-3)
    # SOLO's mean over all three, its dice_loss written out.
    prob = 1 / (1 + np.exp(-logits.reshape(3, -1).astype(np.float64)))
    t = targets.reshape(3, -1)
    dice = 1 - 2 * (prob * t).sum(1) / ((prob ** 2).sum(1) + 0.001 + (t * t).sum(1) + 0.001)
    assert ours["all"] == pytest.approx(dice.mean(), rel=1e-5)
