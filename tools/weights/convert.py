"""Converting published weights to this repo's layout: the rule, and the converter scripts.

One strict rule for every source: each source tensor is used (or is on a short, named list
of tensors that have no role in inference), each model parameter is filled, and shapes
match. Otherwise nothing is written and the error lists every missing, unexpected and
mis-shaped name.
"""

import argparse
import os

import numpy as np

from ..errors import UserError
from .files import WeightFileError, check_finite, load_any, save_pdparams
from .maps import (
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


class ConversionError(UserError):
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


def convert_arrays(cfg, arrays, kind, source="the file"):
    """(our arrays, meta) from source arrays of a known kind; ``source`` names the file in
    the message for an unknown layout."""
    if kind not in SOURCES:
        raise WeightFileError(f"{source}: unrecognised weight layout (first names: "
                              f"{sorted(arrays)[:5]})")
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
    check_finite(arrays, src)
    kind = source_kind(arrays, container)
    if kind == "ours":
        raise WeightFileError(f"{src} is already in this repo's layout; nothing to convert")
    out, meta = convert_arrays(cfg, arrays, kind, src)
    meta["source"] = os.path.basename(os.path.normpath(src))
    save_pdparams(out, dst, meta)
    return kind, len(out)


def converter_entry(script):
    """(config number, Published entry) for a top-level converter script: the first entry,
    over the configs in number order, that names ``script`` as its converter."""
    from config import CONFIGS

    for number, config in sorted(CONFIGS.items()):
        for entry in config.published:
            if entry.converter == script:
                return number, entry
    raise LookupError(f"no config lists {script} as the converter of a published file")


def converter_main(script, argv=None):
    """Command line of the top-level 1_*2paddle.py scripts (``script`` is the file name).

    The config that lists the script in its catalogue gives the defaults: the source is
    that published file (or the folder it unpacks to, when that exists) and the output the
    name the catalogue gives; a source named like another file of the same catalogue gets
    that file's output name."""
    from config import CONFIGS, add_config_arguments, load_config

    number, entry = converter_entry(script)
    default_src = entry.file
    # The unpacked folder is the default unless only the archive is there.
    if entry.unpacked and (os.path.exists(entry.unpacked) or not os.path.exists(entry.file)):
        default_src = entry.unpacked
    parser = argparse.ArgumentParser(description=f"Convert {default_src} to {entry.output}.")
    parser.add_argument("source", nargs="?", default=default_src,
                        help=f"file or folder to convert (default: {default_src})")
    parser.add_argument("--output", help=f"default: {entry.output}")
    add_config_arguments(parser, default=number)
    # Intermixed parsing lets key=value words follow --output as well as precede it.
    args = parser.parse_intermixed_args(argv)
    output = args.output
    if output is None:
        named = os.path.basename(os.path.normpath(args.source))
        output = next((p.output for p in CONFIGS[number].published
                       if named in (p.file, p.unpacked) and p.converter == script),
                      entry.output)
    cfg = load_config(args.config, args.overrides)
    try:
        kind, count = convert_file(cfg, args.source, output)
    except UserError as err:
        # A list of names stays a list; a one-line reason stays one line.
        detail = str(err)
        if "\n" in detail:
            detail = f"\n{detail}\n"
        else:
            detail = f" {detail}{'' if detail.endswith(('.', '?')) else '.'} "
        raise UserError(f"cannot convert {args.source} for config {args.config}:{detail}"
                        "No output file was written.") from None
    print(f"{args.source} ({kind}) -> {output}: {count} tensors for {cfg.name}")
    return 0
