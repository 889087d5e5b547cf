"""Loading weight files into the model: for prediction (every tensor, exact shapes) and
as initial weights for training (a backbone, or a model trained for other classes).

A published file in any supported layout is converted in memory with the same rule and
name maps the converter scripts use (tools/weights/convert.py).
"""

import os

import numpy as np

from .convert import SOURCES, ConversionError, convert_arrays, convert_state, source_kind
from .files import WeightFileError, check_finite, load_any


class MissingWeightsError(WeightFileError):
    """The configured weight file does not exist; the message says how to make it."""


def missing_weights_message(path, cfg):
    """What to do when ``path`` is missing: how the config's default is fetched, and its
    published files with the commands that convert them."""
    lines = [f"weight file not found: {path}"]
    sources = cfg.published_models()
    if sources:
        default = os.path.normpath(path or "") == os.path.normpath(sources[0].output)
        lines.append(("It is the config's default, which is" if default else
                      f"Only the config's default ({sources[0].output}) is")
                     + " fetched, converted and cached in $SOLOV2_HOME on first use unless "
                       "--no-download or SOLOV2_OFFLINE=1 (SOLOV2_WEIGHTS_MIRROR=URL: fetch "
                       "URL/<file> instead). By hand:")
    for src in sources:
        lines.append(f"  wget -O {src.file} '{src.url}'")
        lines.append(f"  python {src.converter} {src.file}    # writes {src.output}")
        if "cloudstor.aarnet.edu.au" in src.url:
            # SOLO's README links its checkpoints there; the service was reported closed.
            lines.append("  (AARNet CloudStor, SOLO's host for this file, was reported closed "
                         "in 2023: use a copy or a mirror)")
    lines.append("or give your file: --weights FILE, or model_path=PATH (test_cfg.model_path "
                 "or eval_cfg.model_path for one stage)")
    return "\n".join(lines)


def load_weights(model, path, cfg):
    """Load a weight file into ``model`` (every tensor, exact shapes); returns its meta.

    Our converted files load directly; a published file in any supported layout is
    converted in memory with the same name maps the converter scripts use.
    """
    if not os.path.exists(path):
        raise MissingWeightsError(missing_weights_message(path, cfg))
    arrays, meta, container = load_any(path)
    check_finite(arrays, path)
    kind = source_kind(arrays, container)
    if kind == "ssld":
        raise WeightFileError(f"{path} is an ImageNet backbone, not a SOLOv2 model")
    if kind != "ours":
        arrays, meta = convert_arrays(cfg, arrays, kind, path)
    state = model.state_dict()
    cate = "head.solo_cate.weight"
    if cate in arrays and cate in state and arrays[cate].shape[0] != state[cate].shape[0]:
        raise WeightFileError(
            f"{path} predicts {arrays[cate].shape[0]} classes but the config has "
            f"num_classes={state[cate].shape[0]}; set num_classes={arrays[cate].shape[0]} "
            "(and a matching classes_path) or use weights trained for your classes")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    out = convert_state(arrays, [(k, k) for k in shapes], shapes)
    model.set_state_dict(out)
    return meta


def load_initial_weights(model, path, cfg, log=print):
    """Initial weights for training; unlike :func:`load_weights` a file may fill part of the
    model. Returns a one-line summary.

    Accepted: an ImageNet backbone (the ssld folder/.tar, or its converted .pdparams), a
    full model in our layout or any published layout. A full model trained for another
    number of classes loads everything except the category output ``head.solo_cate``, which
    keeps its fresh initialisation (fine-tuning). Every tensor the file provides must
    otherwise fit the model exactly; the parts it does not provide keep their
    initialisation, and the summary says which.
    """
    if not os.path.exists(path):
        raise WeightFileError(f"initial weights not found: {path}\n"
                              + _initial_weights_hint(cfg))
    arrays, _, container = load_any(path)
    check_finite(arrays, path)
    kind = source_kind(arrays, container)
    if kind != "ours":
        # Converted for the file's own class count, so that a published COCO file can start
        # a model for other classes (the strict converter refuses any other shape).
        arrays, _ = convert_arrays(_for_source_classes(cfg, arrays, kind), arrays, kind,
                                   path)  # raises on an unknown layout
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    notes = []
    cate = [k for k in ("head.solo_cate.weight", "head.solo_cate.bias") if k in arrays]
    if cate and tuple(arrays[cate[0]].shape) != shapes[cate[0]]:
        notes.append(f"the file predicts {arrays[cate[0]].shape[0]} classes, the config "
                     f"{cfg.num_classes}: head.solo_cate re-initialised")
        for k in cate:
            del arrays[k]
    unknown = sorted(k for k in arrays if k not in shapes)
    misshaped = sorted(f"{k} {list(arrays[k].shape)} vs {list(shapes[k])}" for k in arrays
                       if k in shapes and tuple(arrays[k].shape) != shapes[k])
    if unknown or misshaped:
        raise ConversionError(unexpected=unknown, misshaped=misshaped)
    # The complete state (current values where the file has none), so Paddle does not warn
    # about every tensor the file leaves out.
    update = dict(state)
    update.update({k: v.astype(np.float32) if v.dtype.kind == "f" else v
                   for k, v in arrays.items()})
    model.set_state_dict(update)
    untouched = sorted({k.split(".")[0] for k in shapes if k not in arrays})
    filled = len(arrays)
    summary = (f"initial weights {path}: {filled}/{len(shapes)} tensors loaded"
               + (f"; fresh initialisation kept in: {', '.join(untouched)}" if untouched else "")
               + (f"; {'; '.join(notes)}" if notes else ""))
    log(summary)
    return summary


def _for_source_classes(cfg, arrays, kind):
    """``cfg``, or a copy with num_classes set to the number of classes a published file of
    ``kind`` predicts when that differs (the rest of the architecture must still match)."""
    if kind not in SOURCES:
        return cfg  # convert_arrays names the unknown layout
    source = dict(SOURCES[kind][0](cfg)).get("head.solo_cate.bias")
    if source not in arrays or arrays[source].ndim != 1:
        return cfg
    classes = int(arrays[source].shape[0])
    if classes == cfg.num_classes:
        return cfg
    other = cfg.copy()
    other.num_classes = classes
    return other


def _initial_weights_hint(cfg):
    src = cfg.published_backbone()
    if src is not None:
        return (f"For the ImageNet backbone: wget {src.url} && python {src.converter}"
                f"  (writes {src.output}); or set train_cfg.model_path=None to start from "
                "random weights.")
    return ("Set train_cfg.model_path to a converted backbone or model, or to None to start "
            "from random weights.")
