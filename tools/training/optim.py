"""Optimisation of SOLOv2: frozen stages, parameter groups, LR schedule and weight EMA.

SGD with momentum 0.9 and L2 1e-4 at LR 0.01 for a total batch of 16 (8 GPUs x 2), linear
warm-up, then x0.1 steps [SOLO optimizer / lr_config; PD0.5 LearningRate / OptimizerBuilder].
"""

import paddle
import paddle.nn as nn

from ..errors import ConfigError


# ------------------------------------------------------------------ backbone training
def _backbone_norms(model):
    return [(name, layer) for name, layer in model.backbone.named_sublayers()
            if isinstance(layer, nn.layer.norm._BatchNormBase)]


def _frozen_prefixes(frozen_stages):
    """Backbone sublayer prefixes frozen by ``frozen_stages`` (1 = stem + res2)."""
    if frozen_stages <= 0:
        return ()
    return ("stem.",) + tuple(f"stages.{s}." for s in range(frozen_stages))


def freeze_backbone(model, frozen_stages, norm):
    """Stop gradients of the frozen stages, and of every backbone BatchNorm when ``norm`` is
    'frozen'. See config/base.py (backbone_frozen_stages, backbone_norm)."""
    if norm not in ("affine", "frozen", "train"):
        raise ConfigError(f"backbone_norm must be 'affine', 'frozen' or 'train', got {norm!r}")
    frozen = _frozen_prefixes(frozen_stages)
    for name, param in model.backbone.named_parameters():
        if name.startswith(frozen):
            param.stop_gradient = True
    if norm == "frozen":
        for _, layer in _backbone_norms(model):
            for param in layer.parameters():
                param.stop_gradient = True


def set_train_mode(model, frozen_stages, norm):
    """model.train(), then the backbone BatchNorms that must keep their ImageNet statistics
    back to eval: all of them for 'affine' / 'frozen' (mmdet norm_eval=True,
    PaddleDetection freeze_norm), those of the frozen stages for 'train'."""
    model.train()
    frozen = _frozen_prefixes(frozen_stages)
    for name, layer in _backbone_norms(model):
        if norm != "train" or (name + ".").startswith(frozen):
            layer.eval()


# --------------------------------------------------------------------------- optimizer
def scaled_lr(train_cfg, total_batch):
    """Base LR for the actual total batch: linear scaling (Goyal et al. 2017) from
    ``base_lr`` at ``base_batch_size``, unless ``scale_lr`` is off."""
    if not train_cfg.scale_lr:
        return train_cfg.base_lr
    return train_cfg.base_lr * total_batch / train_cfg.base_batch_size


def lr_at(iteration, base_lr, train_cfg):
    """LR of iteration ``iteration`` (0-based): linear warm-up from warmup_ratio * lr
    [mmdet 'linear' warm-up, PaddleDetection LinearWarmup(start_factor)], times
    lr_gamma for every milestone reached [PiecewiseDecay / mmdet step]."""
    lr = base_lr * train_cfg.lr_gamma ** sum(iteration >= m for m in train_cfg.lr_milestones)
    if iteration < train_cfg.warmup_iters:
        ratio = train_cfg.warmup_ratio
        lr *= ratio + (1.0 - ratio) * iteration / train_cfg.warmup_iters
    return lr


def param_groups(model, train_cfg):
    """Trainable parameters grouped by (LR multiplier, weight decay).

    Backbone stage k (res2..res5) trains at backbone_lr_mult[k - 2] times the LR
    [PD0.5 ResNet lr_mult_list]; the stem takes the res2 multiplier. Backbone BatchNorm
    scale/shift get no weight decay unless backbone_norm_decay [PaddleDetection
    norm_decay=0; mmdet decays every parameter].
    """
    mults = train_cfg.backbone_lr_mult
    norm_params = {id(p) for _, layer in _backbone_norms(model) for p in layer.parameters()}
    groups = {}
    for name, param in model.named_parameters():
        if param.stop_gradient:
            continue
        mult = 1.0
        if name.startswith("backbone."):
            stage = name.split(".")[2] if name.startswith("backbone.stages.") else "0"
            mult = mults[int(stage)]
        decay = train_cfg.weight_decay
        if id(param) in norm_params and not train_cfg.backbone_norm_decay:
            decay = 0.0
        groups.setdefault((mult, decay), []).append(param)
    return [{"params": params, "learning_rate": mult, "weight_decay": decay}
            for (mult, decay), params in sorted(groups.items())]


def build_optimizer(model, train_cfg, lr):
    clip = (nn.ClipGradByGlobalNorm(train_cfg.grad_clip)
            if train_cfg.grad_clip else None)
    return paddle.optimizer.Momentum(learning_rate=lr, momentum=train_cfg.momentum,
                                     parameters=param_groups(model, train_cfg),
                                     weight_decay=train_cfg.weight_decay, grad_clip=clip)


# --------------------------------------------------------------------------------- EMA
class ModelEMA:
    """Exponential moving average of every float tensor of the model's state (parameters
    and BatchNorm statistics): ema = d * ema + (1 - d) * w after each step, with
    d = min(decay, (1 + t) / (10 + t)) so early averages are not dominated by the random
    initial weights [PD0.5 ExponentialMovingAverage(thres_steps), PD2 ModelEMA 'threshold'].
    """

    def __init__(self, model, decay=0.9998):
        self.decay = decay
        self.step = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()
                      if v.dtype in (paddle.float32, paddle.float64)}

    @paddle.no_grad()
    def update(self, model):
        d = min(self.decay, (1.0 + self.step) / (10.0 + self.step))
        current = model.state_dict()
        for name, avg in self.state.items():
            avg.set_value(avg * d + current[name].detach() * (1.0 - d))
        self.step += 1

    def arrays(self):
        return {k: v.numpy() for k, v in self.state.items()}

    def load_arrays(self, arrays, step):
        missing = set(self.state) - set(arrays)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for name, avg in self.state.items():
            avg.set_value(paddle.to_tensor(arrays[name], dtype=avg.dtype))
        self.step = step
