"""Converting published weights to this repo's layout, and loading weights into the model.

One strict rule for every source: each source tensor is used (or is on a short, named list
of tensors that have no role in inference), each model parameter is filled, and shapes
match. Otherwise nothing is written and the error lists every missing, unexpected and
mis-shaped name.
"""

import argparse
import os
import sys

import numpy as np

from .checkpoint_io import WeightFileError, load_any, save_pdparams
from .weight_maps import (
    PPDET2_ALIASES,
    detect_source,
    ppdet2_pairs,
    ppdet_static_pairs,
    solo_pth_ignored,
    solo_pth_pairs,
    ssld_ignored,
    ssld_pairs,
)

# pairs(cfg), ignored(name) -> bool, alias prefixes, preprocessing the weights were made for.
SOURCES = {
    "solo_pth": (solo_pth_pairs, solo_pth_ignored, {}, "mmcv"),
    "ppdet_static": (ppdet_static_pairs, None, {}, "ppdet_static"),
    "ppdet2": (ppdet2_pairs, None, PPDET2_ALIASES, "ppdet2"),
    "ssld": (ssld_pairs, ssld_ignored, {}, None),
}

# Published files per config: where to get them and which script converts them.
WEIGHT_SOURCES = {
    0: [dict(file="SOLOv2_R50_3x.pth",
             url="https://cloudstor.aarnet.edu.au/plus/s/nkxN1FipqkbfoKX/download",
             converter="1_solov2_r50_fpn_8gpu_3x2paddle.py",
             output="dygraph_solov2_r50_fpn_8gpu_3x.pdparams"),
        dict(file="solov2_r50_fpn_3x.pdparams",
             url="https://paddlemodels.bj.bcebos.com/object_detection/solov2_r50_fpn_3x.pdparams",
             converter="1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py",
             output="dygraph_paddle_solov2_r50_fpn_3x.pdparams"),
        dict(file="solov2_r50_fpn_3x_coco.pdparams",
             url="https://paddledet.bj.bcebos.com/models/solov2_r50_fpn_3x_coco.pdparams",
             converter="1_paddle_solov2_r50_fpn_8gpu_3x2paddle.py",
             output="dygraph_solov2_r50_fpn_3x_coco.pdparams")],
    1: [dict(file="SOLOv2_LIGHT_448_R50_3x.pth",
             url="https://cloudstor.aarnet.edu.au/plus/s/cn1jABtVJwsbb2G/download",
             converter="1_solov2_light_448_r50_fpn_8gpu_3x2paddle.py",
             output="dygraph_solov2_light_448_r50_fpn_8gpu_3x.pdparams")],
    2: [dict(file="solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
             url="https://paddlemodels.bj.bcebos.com/object_detection/"
                 "solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
             converter="1_paddle_solov2_light_r50_vd_fpn_dcn_512_3x2paddle.py",
             output="dygraph_solov2_light_r50_vd_fpn_dcn_512_3x.pdparams")],
    3: [dict(file="solov2_r50_enhance_coco.pdparams",
             url="https://paddledet.bj.bcebos.com/models/solov2_r50_enhance_coco.pdparams",
             converter="1_paddle_solov2_r50_enhance_coco2paddle.py",
             output="dygraph_solov2_r50_enhance_coco.pdparams")],
}
SSLD_SOURCE = dict(file="ResNet50_vd_ssld_pretrained.tar",
                   url="https://paddle-imagenet-models-name.bj.bcebos.com/"
                       "ResNet50_vd_ssld_pretrained.tar",
                   converter="1_paddle_r50vd_ssld_2paddle.py",
                   output="dygraph_r50vd_ssld.pdparams")


class ConversionError(Exception):
    """Source and model do not match; lists every offending name."""

    def __init__(self, missing=(), unexpected=(), misshaped=(), other=()):
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.misshaped, self.other = list(misshaped), list(other)
        super().__init__(self.describe())

    def describe(self, limit=40):
        lines = []
        for title, items in (("missing from the source", self.missing),
                             ("in the source but not used", self.unexpected),
                             ("shape mismatch", self.misshaped),
                             ("other problems", self.other)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        return "\n".join(lines)


def resolve_aliases(arrays, aliases):
    """Fold alias copies into their canonical names; an alias must equal its twin."""
    if not aliases:
        return arrays, []
    out, problems = dict(arrays), []
    for name, value in arrays.items():
        for alias, canonical in aliases.items():
            if not name.startswith(alias):
                continue
            twin = canonical + name[len(alias):]
            del out[name]
            if twin not in arrays:
                out[twin] = value
            elif arrays[twin].shape != value.shape or not np.array_equal(arrays[twin], value):
                problems.append(f"{name} differs from its alias {twin}")
    return out, problems


def convert_state(arrays, pairs, target_shapes, ignored=None, aliases=None):
    """Rename ``arrays`` by ``pairs`` (our name, source name) into our layout.

    target_shapes: {our name: shape} of every tensor the result must hold.
    Returns {our name: float32/int ndarray}; raises ConversionError on any mismatch.
    """
    arrays, alias_problems = resolve_aliases(arrays, aliases)
    out, used = {}, set()
    missing, misshaped = [], []
    for ours, theirs in pairs:
        if ours not in target_shapes:
            raise ConversionError(other=[f"name map targets {ours}, which the model lacks"])
        if theirs not in arrays:
            missing.append(f"{theirs} (for {ours})")
            continue
        used.add(theirs)
        value = arrays[theirs]
        if tuple(value.shape) != tuple(target_shapes[ours]):
            misshaped.append(f"{theirs} {list(value.shape)} -> {ours} "
                             f"{list(target_shapes[ours])}")
            continue
        out[ours] = value.astype(np.float32) if value.dtype.kind == "f" else value
    unfilled = sorted(set(target_shapes) - {ours for ours, _ in pairs})
    unexpected = sorted(n for n in arrays
                        if n not in used and not (ignored and ignored(n)))
    if missing or misshaped or unexpected or unfilled or alias_problems:
        raise ConversionError(missing, unexpected, misshaped,
                              [f"no source for model tensor {n}" for n in unfilled]
                              + alias_problems)
    return out


def model_shapes(cfg, backbone_only=False):
    """{name: shape} of the model's state for ``cfg``."""
    import paddle

    from model import build_model

    with paddle.LazyGuard():  # shapes only: skip allocating and initialising weights
        shapes = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    if backbone_only:
        shapes = {k: s for k, s in shapes.items()
                  if k.startswith("backbone.") and ".conv_offset." not in k}
    return shapes


def source_kind(arrays, container):
    if container == "torch":
        return "solo_pth"
    if container == "folder":
        return "ssld"
    return detect_source(arrays)


def convert_arrays(cfg, arrays, kind):
    """(our arrays, meta) from source arrays of a known kind."""
    if kind not in SOURCES:
        raise WeightFileError(f"unrecognised weight layout (first names: {sorted(arrays)[:5]})")
    pairs_fn, ignored, aliases, preprocess = SOURCES[kind]
    shapes = model_shapes(cfg, backbone_only=kind == "ssld")
    out = convert_state(arrays, pairs_fn(cfg), shapes, ignored, aliases)
    meta = {"format": kind, "config": cfg.name}
    if preprocess:
        meta["preprocess"] = preprocess
    return out, meta


def convert_file(cfg, src, dst):
    """Convert ``src`` (any supported format) for ``cfg`` and write ``dst`` atomically."""
    arrays, _, container = load_any(src)
    kind = source_kind(arrays, container)
    if kind == "ours":
        raise WeightFileError(f"{src} is already in this repo's layout; nothing to convert")
    out, meta = convert_arrays(cfg, arrays, kind)
    meta["source"] = os.path.basename(os.path.normpath(src))
    save_pdparams(out, dst, meta)
    return kind, len(out)


def converter_main(config_number, default_src, default_dst, argv=None):
    """Command line of the top-level 1_*2paddle.py scripts. ``default_src`` may list
    several candidates; the first that exists is the default."""
    from config import add_config_arguments, load_config

    if isinstance(default_src, (list, tuple)):
        default_src = next((p for p in default_src if os.path.exists(p)), default_src[0])
    parser = argparse.ArgumentParser(description=f"Convert {default_src} to {default_dst}.")
    parser.add_argument("source", nargs="?", default=default_src,
                        help=f"file or folder to convert (default: {default_src})")
    parser.add_argument("--output", default=default_dst, help=f"default: {default_dst}")
    add_config_arguments(parser, default=config_number)
    # Intermixed parsing lets key=value words follow --output as well as precede it.
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        kind, count = convert_file(cfg, args.source, args.output)
    except (WeightFileError, ConversionError, ValueError) as err:
        print(f"error: cannot convert {args.source} for config {args.config}:\n{err}",
              file=sys.stderr)
        print("No output file was written.", file=sys.stderr)
        return 1
    print(f"{args.source} ({kind}) -> {args.output}: {count} tensors for {cfg.name}")
    return 0


class MissingWeightsError(WeightFileError):
    """The configured weight file does not exist; the message says how to make it."""


def missing_weights_message(path, config_number):
    lines = [f"weight file not found: {path}"]
    sources = WEIGHT_SOURCES.get(config_number, [])
    if sources:
        lines.append("Download a published file and convert it, e.g.:")
    for src in sources:
        lines.append(f"  wget -O {src['file']} '{src['url']}'")
        lines.append(f"  python {src['converter']} {src['file']}    # writes {src['output']}")
    lines.append("or point the config at your file: test_cfg.model_path=PATH "
                 "(eval_cfg.model_path for eval.py)")
    return "\n".join(lines)


def load_weights(model, path, cfg, config_number=None):
    """Load a weight file into ``model`` (every tensor, exact shapes); returns its meta.

    Our converted files load directly; a published file in any supported layout is
    converted in memory with the same name maps the converter scripts use.
    """
    if not os.path.exists(path):
        raise MissingWeightsError(missing_weights_message(path, config_number))
    arrays, meta, container = load_any(path)
    kind = source_kind(arrays, container)
    if kind == "ssld":
        raise WeightFileError(f"{path} is an ImageNet backbone, not a SOLOv2 model")
    if kind != "ours":
        arrays, meta = convert_arrays(cfg, arrays, kind)
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
    kind = source_kind(arrays, container)
    if kind != "ours":
        arrays, _ = convert_arrays(cfg, arrays, kind)  # raises on an unknown layout
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


def _initial_weights_hint(cfg):
    if cfg.backbone_variant == "d":
        src = SSLD_SOURCE
        return (f"For the ImageNet backbone: wget {src['url']} && python {src['converter']}"
                f"  (writes {src['output']}); or set train_cfg.model_path=None to start from "
                "random weights.")
    return ("Set train_cfg.model_path to a converted backbone or model, or to None to start "
            "from random weights.")
