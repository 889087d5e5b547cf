"""Training checkpoints: model, optimizer, EMA and iteration in one file, written atomically.

Layout: ``OUTPUT/checkpoints/iter_0001000.pdparams``, a flat {name: array} pickle (read with
the safe unpickler of tools/weights/files.py) whose names are prefixed ``model/``,
``optim/`` and ``ema/``; the iteration and EMA step are in its meta. The file is written
under a temporary name and renamed into place (tools.weights.files.save_pdparams), so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one;
temporary names (``.tmp-*``) never match the checkpoint pattern, so resuming cannot pick
one up. Optimizer slots are stored under the parameter's structured name
(``head.solo_cate.weight::velocity_0``) because Paddle's own parameter names
(``conv2d_12.w_0``) depend on creation order in the process.
"""

import math
import os
import re
import sys

from ..errors import UserError
from ..weights.files import WeightFileError, load_pdparams, save_pdparams

PATTERN = re.compile(r"^iter_(\d+)\.pdparams$")


def checkpoint_dir(output_dir):
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(folder):
    """[(iteration, path)] of complete checkpoints in ``folder``, oldest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = PATTERN.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def _optimizer_arrays(model, optimizer):
    structured = {p.name: n for n, p in model.named_parameters()}
    out = {}
    for key, value in optimizer.state_dict().items():
        if not hasattr(value, "numpy"):
            continue  # e.g. an LR scheduler's dict; our LR is a function of the iteration
        owner = max((p for p in structured if key.startswith(p + "_")), key=len, default=None)
        if owner is None:
            raise KeyError(f"optimizer slot {key!r} belongs to no model parameter")
        out[f"{structured[owner]}::{key[len(owner) + 1:]}"] = value.numpy()
    return out


def _restore_optimizer(model, optimizer, arrays):
    names = {n: p.name for n, p in model.named_parameters()}
    state = {}
    for key, value in arrays.items():
        param, slot = key.split("::", 1)
        if param not in names:
            raise KeyError(f"checkpoint has optimizer state for unknown parameter {param}")
        state[f"{names[param]}_{slot}"] = value
    optimizer.set_state_dict(state)


def save_checkpoint(folder, iteration, model, optimizer, ema=None, keep=3, meta=None):
    """Write ``iter_{iteration}.pdparams`` and delete all but the newest ``keep``."""
    arrays = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in _optimizer_arrays(model, optimizer).items()})
    info = dict(meta or {}, iteration=iteration)
    if ema is not None:
        arrays.update({f"ema/{k}": v for k, v in ema.arrays().items()})
        info["ema_step"] = ema.step
    path = os.path.join(folder, f"iter_{iteration:07d}.pdparams")
    save_pdparams(arrays, path, info)
    for _, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        os.remove(old)
    return path


def _warn(message):
    print(message, file=sys.stderr)


def load_latest(folder, log=_warn):
    """(iteration, arrays, meta, path) of the newest readable checkpoint, or None.

    A checkpoint that cannot be read (damaged by something other than our own writes) is
    reported and the next older one is tried.
    """
    for iteration, path in reversed(list_checkpoints(folder)):
        try:
            arrays, meta = load_pdparams(path)
        except WeightFileError as err:
            log(f"warning: skipping unreadable checkpoint {path}: {err}")
            continue
        return iteration, arrays, meta, path
    return None


def restore(arrays, meta, model, optimizer, ema=None):
    """Load a checkpoint's parts into the training objects; returns the iteration."""
    parts = {"model": {}, "optim": {}, "ema": {}}
    for key, value in arrays.items():
        part, name = key.split("/", 1)
        parts[part][name] = value
    expected = set(model.state_dict())
    if set(parts["model"]) != expected:
        missing = sorted(expected - set(parts["model"]))[:5]
        extra = sorted(set(parts["model"]) - expected)[:5]
        raise WeightFileError(f"checkpoint does not fit this model (missing {missing}, "
                              f"unexpected {extra}); was it written with another config?")
    model.set_state_dict(parts["model"])
    _restore_optimizer(model, optimizer, parts["optim"])
    if ema is not None:
        if not parts["ema"]:
            raise WeightFileError("the config uses EMA but the checkpoint has no EMA state")
        ema.load_arrays(parts["ema"], int(meta.get("ema_step", 0)))
    return int(meta["iteration"])


def start_iteration(output_dir, resume, model, optimizer, ema=None, log=_warn):
    """(first iteration, best mask AP so far) of a run writing into ``output_dir``:
    (0, -inf) for a new run, else what the newest checkpoint recorded, its state restored
    into the training objects. A new run refuses a folder that already holds checkpoints,
    so that one run never mixes into another's."""
    folder = checkpoint_dir(output_dir)
    if not resume:
        existing = list_checkpoints(folder)
        if existing:
            raise UserError(f"{folder} already holds checkpoints up to iteration "
                            f"{existing[-1][0]}; pass --resume to continue that run, or set "
                            "train_cfg.output_dir to a new folder")
        return 0, -math.inf
    found = load_latest(folder, log=log)
    if found is None:
        log(f"--resume: no checkpoint in {folder}; starting at iteration 0")
        return 0, -math.inf
    _, arrays, meta, path = found
    try:
        iteration = restore(arrays, meta, model, optimizer, ema)
    except (KeyError, ValueError, WeightFileError) as err:
        reason = str(err).strip("'\"")
        raise WeightFileError(f"{path}: {reason}; to start a new run instead, set "
                              "train_cfg.output_dir to a new folder") from None
    log(f"resumed from {path} at iteration {iteration}")
    return iteration, float(meta.get("best_ap", "-inf"))
