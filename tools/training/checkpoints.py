"""Training checkpoints: model, optimizer, EMA and iteration in one file, written atomically.

Layout: ``OUTPUT/checkpoints/iter_0001000.pdparams``, a flat {name: array} pickle (read with
the safe unpickler of tools/weights/files.py) whose names are prefixed ``model/``,
``optim/`` and ``ema/``; the iteration and EMA step are in its meta. The file is written
under a temporary name and renamed into place (tools.weights.files.save_pdparams), so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one;
temporary names (``.tmp-*``) never match the checkpoint pattern, so resuming cannot pick
one up, and :func:`remove_interrupted_writes` deletes them when the next run starts.
A checkpoint that does not load (damaged after it was written: a copy cut short, a bad
disk) is renamed ``iter_*.pdparams.damaged`` when a resume meets it, so that it is neither
resumed from nor counted as one of the checkpoints to keep. Optimizer slots are stored
under the parameter's structured name (``head.solo_cate.weight::velocity_0``) because
Paddle's own parameter names (``conv2d_12.w_0``) depend on creation order in the process.
"""

import contextlib
import math
import os
import re
import sys

from ..errors import UserError
from ..files import remove_stale_temporaries
from ..weights.files import WeightFileError, check_finite, load_pdparams, save_pdparams

PATTERN = re.compile(r"^iter_(\d+)\.pdparams$")
DAMAGED_SUFFIX = ".damaged"
# How many mismatched tensors a "does not fit" message lists before "and N more".
_SHOWN = 5


def checkpoint_dir(output_dir):
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(folder, iteration):
    """Where the checkpoint of ``iteration`` is (or will be) in ``folder``."""
    return os.path.join(folder, f"iter_{iteration:07d}.pdparams")


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


def _warn(message):
    print(message, file=sys.stderr)


def remove_interrupted_writes(output_dir, log=_warn):
    """Delete the ``.tmp-*`` files a killed run left in ``output_dir`` and its checkpoint
    folder (a checkpoint or model file cut off mid-write); returns the bytes freed.
    Only the process that writes there may call this: another one's file being written
    is a ``.tmp-*`` file too."""
    removed = []
    freed = sum(remove_stale_temporaries(folder, removed.append)
                for folder in (checkpoint_dir(output_dir), output_dir))
    for line in removed:
        log(line)
    if removed:
        log(f"removed {len(removed)} temporary file(s) of interrupted writes, "
            f"{freed / 1e6:.1f} MB")
    return freed


# --------------------------------------------------------------------------- writing
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


def save_checkpoint(folder, iteration, model, optimizer, ema=None, keep=3, meta=None,
                    protect=()):
    """Write ``iter_{iteration}.pdparams``, then delete the checkpoints other than the
    newest ``keep`` (``keep`` <= 0 keeps all), the one just written and those in
    ``protect`` (the checkpoint a resumed run started from). A write that fails (disk
    full: OutputError) deletes nothing."""
    arrays = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in _optimizer_arrays(model, optimizer).items()})
    info = dict(meta or {}, iteration=iteration)
    if ema is not None:
        arrays.update({f"ema/{k}": v for k, v in ema.arrays().items()})
        info["ema_step"] = ema.step
    path = checkpoint_path(folder, iteration)
    save_pdparams(arrays, path, info)
    if keep > 0:
        listed = [p for _, p in list_checkpoints(folder)]
        kept = {os.path.basename(p) for p in listed[-keep:] + [path] + list(protect)}
        for old in listed:
            if os.path.basename(old) not in kept:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(old)
    return path


# --------------------------------------------------------------------------- reading
def set_aside(path, log=_warn, reason=""):
    """Rename a checkpoint that does not load to ``<path>.damaged``, out of the pattern
    resuming and pruning look at but still there to inspect; returns the new path."""
    damaged = path + DAMAGED_SUFFIX
    try:
        os.replace(path, damaged)
    except FileNotFoundError:
        pass  # another process of a multi-GPU resume set it aside first
    log(f"warning: {path} does not load ({reason}); renamed to {damaged} and not "
        "resumed from")
    return damaged


def load_latest(folder, log=_warn):
    """(iteration, arrays, meta, path) of the newest readable checkpoint, or None.

    A checkpoint that cannot be read is set aside (:func:`set_aside`) and the next older
    one is tried.
    """
    for iteration, path in reversed(list_checkpoints(folder)):
        try:
            arrays, meta = load_pdparams(path)
            check_finite(arrays, path)  # NaN weights count as unreadable
        except WeightFileError as err:
            set_aside(path, log, str(err).replace(f"{path}: ", "", 1))
            continue
        return iteration, arrays, meta, path
    return None


def _shape(value):
    return list(getattr(value, "shape", ()))


def _differences(part, expected, found):
    """Lines for what differs between ``expected`` {name: shape} and ``found`` {name:
    array} of one part of a checkpoint ('model', 'optimizer', 'EMA')."""
    lines = [f"{part} {name}: {_shape(found[name])} in the checkpoint, {list(shape)} here"
             for name, shape in expected.items()
             if name in found and _shape(found[name]) != list(shape)]
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        lines.append(f"{part} tensors missing from the checkpoint: {missing[:_SHOWN]}"
                     + (f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""))
    if extra:
        lines.append(f"{part} tensors this model does not have: {extra[:_SHOWN]}"
                     + (f" and {len(extra) - _SHOWN} more" if len(extra) > _SHOWN else ""))
    return lines


def _optimizer_expected(model, arrays):
    """{structured slot name: shape} the optimizer will ask for: every slot kind found in
    the checkpoint (velocity_0 for Momentum) for every parameter that trains in this
    config. Paddle creates a slot at a parameter's first update and, once a state was
    loaded, asserts that it holds one for it; a slot with one element (a step count) is
    not per parameter and keeps its own shape."""
    trainable = {n: p.shape for n, p in model.named_parameters() if not p.stop_gradient}
    kinds = {key.partition("::")[2] for key in arrays if "::" in key}
    expected = {}
    for kind in kinds:
        for name, shape in trainable.items():
            key = f"{name}::{kind}"
            stored = arrays.get(key)
            small = stored is not None and getattr(stored, "size", 0) == 1
            expected[key] = _shape(stored) if small else shape
    return expected


def _check_fit(parts, model, ema):
    """Raise WeightFileError naming the tensors whose names or shapes differ from what
    the training objects expect, before anything is loaded into them."""
    lines = _differences("model", {k: v.shape for k, v in model.state_dict().items()},
                         parts["model"])
    lines += _differences("optimizer", _optimizer_expected(model, parts["optim"]),
                          parts["optim"])
    if ema is not None:
        if not parts["ema"]:
            raise WeightFileError("the config uses EMA but the checkpoint has no EMA state")
        lines += _differences("EMA", {k: v.shape for k, v in ema.state.items()}, parts["ema"])
    if lines:
        shown = "; ".join(lines[:_SHOWN])
        total = f"; {len(lines)} differences in all" if len(lines) > _SHOWN else ""
        raise WeightFileError("checkpoint does not fit this model (was it written with "
                              f"another config?): {shown}{total}")


def _restore_optimizer(model, optimizer, arrays):
    names = {n: p.name for n, p in model.named_parameters()}
    state = {}
    for key, value in arrays.items():
        param, slot = key.split("::", 1)
        state[f"{names[param]}_{slot}"] = value
    optimizer.set_state_dict(state)


def restore(arrays, meta, model, optimizer, ema=None):
    """Load a checkpoint's parts into the training objects; returns the iteration.
    Names and shapes of every part are compared first: a checkpoint of another model is
    one WeightFileError listing what differs, and nothing is loaded."""
    parts = {"model": {}, "optim": {}, "ema": {}}
    for key, value in arrays.items():
        part, name = key.split("/", 1)
        parts[part][name] = value
    _check_fit(parts, model, ema)
    model.set_state_dict(parts["model"])
    _restore_optimizer(model, optimizer, parts["optim"])
    if ema is not None:
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
