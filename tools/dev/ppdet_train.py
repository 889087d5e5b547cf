"""PaddleDetection 2.6's SOLOv2 training step on our batch, beside ours
(``tools/benchmark_train.py --compare-ppdet``).

PaddleDetection is a development dependency, imported only when asked for. Its model is
built by its own workspace with this config's architecture (tools/dev/ppdet_arch.py, plus
DropBlock when the config has it: PaddleDetection's head adds it only in training, and
inference did not need it), in training mode, and given OUR weights (tools/dev/
ppdet_compare.py: the converter's name map read backwards). Its parameters train where ours
train: the frozen stem and res2, frozen BatchNorm affines where the config freezes them, and
not the zero biases that config 2's head DCNs get there (ours have none).

Its step on the samples our data pipeline made (the same images, masks, boxes and labels):
  targets    its PadBatch(pad_to_stride=32) and Gt2Solov2Target with the config's grids,
             scale ranges and sigma, each field stacked over the batch as its collate does,
             then tensors;
  forward    SOLOv2.model_arch() (backbone, FPN, mask-feature head, SOLOv2 head);
  loss       SOLOv2.get_loss() with its SOLOv2Loss (Dice x 3 + focal), read back as floats;
  backward, optimizer
             loss.backward(), then paddle.optimizer.Momentum with our config's LR, momentum,
             weight decay and clipping (the one optimizer class both use), and clear_grad.
"""

import json
import os
import statistics
import sys

import numpy as np
import paddle

from tools.training.benchmark import Clock
from tools.weights.files import load_any
from tools.weights.maps import ppdet2_pairs

from .ppdet_arch import ARCHITECTURES, build_ppdet
from .ppdet_compare import PPDetUnavailable, _with_head_bias, import_ppdet, ppdet_state


def build_ppdet_model(cfg, weights, ours):
    """PaddleDetection's SOLOv2 in training mode with the weights of the file ``weights``,
    training the parameters that train in ``ours`` (our SOLOv2 after freeze_backbone)."""
    import_ppdet()
    if cfg.number not in ARCHITECTURES:
        raise PPDetUnavailable(f"--compare-ppdet: PaddleDetection 2.6 has no model with the "
                               f"architecture of config {cfg.number} ({cfg.name}); configs "
                               f"{sorted(ARCHITECTURES)} have one")
    from ppdet.modeling.losses.solov2_loss import SOLOv2Loss

    arch = {k: dict(v) for k, v in ARCHITECTURES[cfg.number].items()}
    arch.setdefault("SOLOv2Head", {})["drop_block"] = bool(cfg.drop_block)
    theirs = build_ppdet(arch)
    theirs.train()
    wanted = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    arrays, _, _ = load_any(weights)
    theirs.set_state_dict(ppdet_state(cfg, arrays, wanted))
    # Its loss defaults are ours: Dice weight 3, focal gamma 2 and alpha 0.25.
    theirs.solov2_head.solov2_loss = SOLOv2Loss()
    match_trainable(cfg, ours, theirs)
    return theirs


def match_trainable(cfg, ours, theirs):
    """Give every PaddleDetection parameter our twin's stop_gradient; parameters without a
    twin (config 2's zero head-DCN biases) stay fixed. Returns the trainable count."""
    no_bias = bool(cfg.head_dcn_convs) and not cfg.head_dcn_bias
    pairs = ppdet2_pairs(_with_head_bias(cfg) if no_bias else cfg)
    our_params = dict(ours.named_parameters())
    their_params = dict(theirs.named_parameters())
    twin = {}
    for our_name, their_name in pairs:
        if their_name in their_params and our_name in our_params:
            twin[id(their_params[their_name])] = our_params[our_name]
    for param in their_params.values():
        ours_param = twin.get(id(param))
        param.stop_gradient = True if ours_param is None else ours_param.stop_gradient
    trainable = sum(not p.stop_gradient for p in their_params.values())
    expected = sum(not p.stop_gradient for p in our_params.values())
    if trainable != expected:
        raise RuntimeError(f"PaddleDetection's model trains {trainable} tensors, ours "
                           f"{expected}: the name map missed some")
    return trainable


def ppdet_inputs(cfg, samples):
    """The model inputs PaddleDetection's reader makes of ``samples`` (our transformed
    samples: image [3, h, w], masks, boxes, labels), as tensors."""
    from ppdet.data.transform.batch_operators import Gt2Solov2Target, PadBatch

    batch = [{"image": s["image"], "gt_segm": s["masks"],
              "gt_bbox": np.asarray(s["boxes"], np.float32),
              "gt_class": np.asarray(s["labels"], np.int32).reshape(-1, 1),
              "is_crowd": np.zeros((len(s["labels"]), 1), np.int32),
              "gt_poly": [[] for _ in s["labels"]]} for s in samples]
    batch = PadBatch(pad_to_stride=32)(batch)
    batch = Gt2Solov2Target(list(cfg.num_grids), [list(r) for r in cfg.scale_ranges],
                            cfg.sigma)(batch)
    keys = ["image", "fg_num"] + [f"{field}{level}" for level in range(len(cfg.num_grids))
                                  for field in ("cate_label", "ins_label", "grid_order")]
    return {k: paddle.to_tensor(np.stack([s[k] for s in batch])) for k in keys}


def _float(value):
    return float(np.asarray(value.numpy()).reshape(-1)[0])


class PPDetStep:
    """PaddleDetection's training step; ``__call__(samples, clock)`` -> its losses."""

    def __init__(self, cfg, model, lr):
        train = cfg.train_cfg
        self.cfg, self.model, self.lr = cfg, model, lr
        clip = paddle.nn.ClipGradByGlobalNorm(train.grad_clip) if train.grad_clip else None
        self.optimizer = paddle.optimizer.Momentum(
            learning_rate=lr, momentum=train.momentum,
            parameters=[p for p in model.parameters() if not p.stop_gradient],
            weight_decay=train.weight_decay, grad_clip=clip)

    def __call__(self, samples, clock):
        self.model.inputs = ppdet_inputs(self.cfg, samples)
        clock.lap("targets")
        self.model.model_arch()
        clock.lap("forward")
        losses = self.model.get_loss()
        values = {k: _float(losses[k]) for k in ("loss", "loss_ins", "loss_cate")}
        clock.lap("loss")
        losses["loss"].backward()
        clock.lap("backward")
        self.optimizer.step()
        self.optimizer.clear_grad()
        clock.lap("optimizer")
        return values


def build_ppdet_step(cfg, weights, ours, lr):
    return PPDetStep(cfg, build_ppdet_model(cfg, weights, ours), lr)


def version():
    import ppdet

    return getattr(ppdet, "__version__", "2.6")


# ------------------------------------------------------------------ as shipped
def save_samples(path, samples):
    arrays = {}
    for i, s in enumerate(samples):
        for key in ("image", "masks", "boxes", "labels"):
            arrays[f"{i}.{key}"] = s[key]
    np.savez(path, **arrays)


def load_samples(path):
    data = np.load(path)
    count = len({k.split(".")[0] for k in data.files})
    return [{key: data[f"{i}.{key}"] for key in ("image", "masks", "boxes", "labels")}
            for i in range(count)]


def time_as_shipped(cfg, weights, samples, repeats, overrides=()):
    """Median seconds per stage of PaddleDetection's step on ``samples`` in a fresh process
    as its users run it: Paddle's default thread count (one) and MKL's own kernel choice
    (no MKL_DEBUG_CPU_TYPE, which this process may have set for itself)."""
    import subprocess
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in ("MKL_DEBUG_CPU_TYPE", "MKL_CBWR")}
    env["SOLOV2_AMD_FAST_PATH"] = "0"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.npz")
        save_samples(path, samples)
        done = subprocess.run([sys.executable, "-m", "tools.dev.ppdet_train", str(cfg.number),
                               weights, path, str(repeats), *overrides], cwd=root, env=env,
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"timing PaddleDetection as shipped failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _as_shipped_main(argv):
    """``python -m tools.dev.ppdet_train CONFIG WEIGHTS SAMPLES.npz REPEATS [key=value ...]``:
    PaddleDetection's step at Paddle's defaults, one warm-up then REPEATS passes; prints
    the median seconds per stage as one json line."""
    from config import load_config
    from model import build_model
    from tools.training.benchmark import STEP
    from tools.training.optim import freeze_backbone, scaled_lr

    number, weights, path, repeats, *overrides = argv
    cfg = load_config(int(number), overrides)
    samples = load_samples(path)
    ours = build_model(cfg)
    freeze_backbone(ours, cfg.backbone_frozen_stages, cfg.backbone_norm)
    step = build_ppdet_step(cfg, weights, ours, scaled_lr(cfg.train_cfg, len(samples)))
    seconds = {}
    for index in range(1 + int(repeats)):
        clock = Clock()
        step(samples, clock)
        if index:
            for stage, value in clock.seconds.items():
                seconds.setdefault(stage, []).append(value)
    seconds["step"] = [sum(v) for v in zip(*(seconds[s] for s in STEP))]
    print(json.dumps({k: statistics.median(v) for k, v in seconds.items()}))


if __name__ == "__main__":
    _as_shipped_main(sys.argv[1:])
