"""SOLOv2 training loss (Wang et al. 2020, Sec. 3.3): L = L_cate + lambda * L_mask.

L_cate is the sigmoid focal loss (Lin et al. 2017) over every grid cell and class, summed and
divided by (number of positive cells + 1). L_mask is the Dice loss between the mask each
positive cell's dynamic kernel predicts and that cell's instance mask, averaged over the
positives, with lambda = 3 [SOLO configs: loss_ins weight 3.0; FocalLoss gamma 2, alpha 0.25].

The references average the Dice loss differently when a positive's target mask is empty
(its instance vanished when the mask was downsampled to stride 4), and each config follows
its own (``dice_average``):
  'all'       SOLO SOLOv2Head.loss: torch.cat(loss_ins).mean() over every positive; an
              empty target costs about 1 there.
  'nonempty'  PaddleDetection SOLOv2Loss (0.5 and 2.x): each positive weighted by
              (target sum > 0), the sum divided by the sum of the weights. The weights
              exist because its batches are padded with all-zero dummy targets; they drop
              the real empty ones too. Without any non-empty target it divides 0 by 0;
              here that is 0.

The targets come from tools.data.targets (:class:`TargetCollator`); see there for their layout.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def dice_loss(probs, targets, eps=0.001):
    """1 - Dice coefficient per instance.

    probs, targets: [P, H, W] (probabilities and 0/1 masks) -> [P].
    ``eps`` is added to both squared sums, as in both references, so an empty prediction
    against an empty target costs 1 instead of dividing by zero.
    """
    probs = probs.reshape([probs.shape[0], -1])
    targets = targets.reshape([targets.shape[0], -1])
    inter = (probs * targets).sum(axis=1)
    union = (probs * probs).sum(axis=1) + eps + (targets * targets).sum(axis=1) + eps
    return 1.0 - 2.0 * inter / union


def sigmoid_focal_loss(logits, onehot, gamma=2.0, alpha=0.25):
    """Element-wise focal loss, not reduced.

    logits, onehot: [M, C]; onehot is 1 where cell m belongs to class c.
    FL = -alpha_t (1 - p_t)^gamma log(p_t); the log term is computed from logits, which
    stays finite for any logit.
    """
    ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    p = F.sigmoid(logits)
    p_t = p * onehot + (1 - p) * (1 - onehot)
    alpha_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    return alpha_t * (1 - p_t) ** gamma * ce


class SOLOv2Loss(nn.Layer):
    """Args:
        num_classes: category channels C.
        ins_weight: lambda, the weight of the mask (Dice) loss.
        gamma, alpha: focal loss parameters.
        dice_average: 'all' or 'nonempty' positives (see the module docstring).

    forward(cate_logits, kernels, mask_feat, targets) -> dict(loss, loss_ins, loss_cate)
        cate_logits: list over levels of [N, C, S, S]
        kernels:     list over levels of [N, E, S, S]
        mask_feat:   [N, E, H/4, W/4]
        targets:     dict from tools.data.targets (cate_labels, ins_index, ins_masks, num_pos).
    """

    def __init__(self, num_classes, ins_weight=3.0, gamma=2.0, alpha=0.25, dice_average="all"):
        super().__init__()
        if dice_average not in ("all", "nonempty"):
            raise ValueError(f"dice_average must be 'all' or 'nonempty', not {dice_average!r}")
        self.dice_average = dice_average
        self.num_classes = num_classes
        self.ins_weight = ins_weight
        self.gamma = gamma
        self.alpha = alpha

    def mask_loss(self, kernels, mask_feat, ins_index, ins_masks):
        """Dice loss averaged over the positives ``dice_average`` counts; 0 (still attached
        to the graph) without any."""
        n, e = mask_feat.shape[:2]
        # Every cell of every level, level order then row-major: [N, L, E].
        flat_kernels = paddle.concat(
            [k.transpose([0, 2, 3, 1]).reshape([n, -1, e]) for k in kernels], axis=1)
        losses = []
        for i in range(n):
            index, target = ins_index[i], ins_masks[i]
            if index.shape[0] == 0:
                continue
            # The dynamic 1x1 conv of Sec. 3.2: each positive's kernel [E] dotted with
            # the mask feature at every pixel.
            chosen = paddle.gather(flat_kernels[i], index)                      # [P, E]
            logits = paddle.matmul(chosen, mask_feat[i].reshape([e, -1]))       # [P, HW]
            target = target.astype("float32").reshape([target.shape[0], -1])
            if self.dice_average == "nonempty":
                keep = (target.sum(axis=1) > 0).astype("float32")
            else:
                keep = paddle.ones([target.shape[0]], "float32")
            losses.append((dice_loss(F.sigmoid(logits), target) * keep, keep))
        if not losses:
            # No instance in the batch: a zero that still reaches the kernel branch and the
            # mask feature, so every parameter gets a (zero) gradient, which DataParallel's
            # gradient all-reduce expects.
            return sum(k.sum() for k in kernels) * 0.0 + mask_feat.sum() * 0.0
        total = paddle.concat([loss for loss, _ in losses]).sum()
        count = paddle.concat([keep for _, keep in losses]).sum()
        return total / paddle.clip(count, min=1.0)

    def category_loss(self, cate_logits, cate_labels, num_pos):
        """Focal loss over all cells; labels 0 = background, c + 1 = class c."""
        logits = paddle.concat(
            [c.transpose([0, 2, 3, 1]).reshape([-1, self.num_classes]) for c in cate_logits])
        labels = paddle.concat([lab.reshape([-1]) for lab in cate_labels])
        onehot = F.one_hot(labels, self.num_classes + 1)[:, 1:]
        loss = sigmoid_focal_loss(logits, onehot, self.gamma, self.alpha).sum()
        return loss / (num_pos + 1.0)

    def forward(self, cate_logits, kernels, mask_feat, targets):
        loss_ins = self.mask_loss(kernels, mask_feat, targets["ins_index"],
                                  targets["ins_masks"]) * self.ins_weight
        num_pos = targets["num_pos"]
        if isinstance(num_pos, paddle.Tensor):
            num_pos = num_pos.astype("float32").sum()
        loss_cate = self.category_loss(cate_logits, targets["cate_labels"], num_pos)
        return {"loss": loss_ins + loss_cate, "loss_ins": loss_ins, "loss_cate": loss_cate}
