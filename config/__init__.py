"""Numbered configs, command-line overrides and the start-up table.

Every script takes ``--config=N`` (default 2) and any number of ``key=value`` words that
override fields, e.g. ``python demo.py --config=0 test_cfg.draw_thresh=0.5 num_classes=3``.
Each value is parsed and checked by the field's rule in config/checks.py (type and range),
and the whole config once more when it is resolved, so a bad value is one line naming the
field, the value and what is allowed, before any data or weights are read. The argparse
types the scripts' own options use (positive_int, probability, ...) come from there too.
"""

import argparse
import difflib

from tools.device import add_device_argument
from tools.errors import ConfigError

from .base import Published, Section, SOLOv2Config
from .checks import (
    FIELDS,
    nonnegative_int,
    parse_override,
    positive_int,
    positive_int_list,
    probability,
)
from .solov2_light_448_r50_fpn_8gpu_3x import SOLOv2_Light_448_R50_FPN_8GPU_3x
from .solov2_light_r50_vd_fpn_dcn_512_3x import SOLOv2_Light_R50_VD_FPN_DCN_512_3x
from .solov2_r50_enhance_coco import SOLOv2_R50_Enhance_COCO
from .solov2_r50_fpn_8gpu_3x import SOLOv2_R50_FPN_8GPU_3x
from .solov2_shapes_tour import SOLOv2_Shapes_Tour

# Config 4 is the CPU quick tour on synthetic data and the template for custom data.
_NUMBERED = (SOLOv2_R50_FPN_8GPU_3x, SOLOv2_Light_448_R50_FPN_8GPU_3x,
             SOLOv2_Light_R50_VD_FPN_DCN_512_3x, SOLOv2_R50_Enhance_COCO, SOLOv2_Shapes_Tour)
CONFIGS = {c.number: c for c in _NUMBERED}
if len(CONFIGS) != len(_NUMBERED):
    raise ImportError(f"two configs share a number: {[c.number for c in _NUMBERED]}")
DEFAULT_CONFIG = 2

def apply_overrides(cfg, words):
    """Apply ``key=value`` words to ``cfg`` in place. Raises ConfigError on a bad word: not
    key=value, an unknown field, or a value its rule (config/checks.py) refuses."""
    known = dict(cfg.fields())
    for word in words:
        if "=" not in word:
            raise ConfigError(f"override {word!r} is not of the form key=value")
        key, text = word.split("=", 1)
        key = key.strip()
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config field {key!r}{hint}")
        value = parse_override(key, text.strip())
        owner, _, attr = key.rpartition(".")
        target = getattr(cfg, owner) if owner else cfg
        setattr(target, attr, value)
        known[key] = value
    return cfg


def load_config(number=DEFAULT_CONFIG, overrides=()):
    """Config ``number`` with ``key=value`` overrides applied, derived fields filled and
    every field checked (see SOLOv2Config.resolve). Raises ConfigError for a bad number,
    word or value."""
    if number not in CONFIGS:
        choices = ", ".join(f"{n} = {c.name}" for n, c in CONFIGS.items())
        raise ConfigError(f"--config={number} does not exist; choose {choices}")
    cfg = CONFIGS[number]()
    return apply_overrides(cfg, overrides).resolve()


def add_config_arguments(parser, default=DEFAULT_CONFIG):
    """Add ``--config`` and the trailing ``key=value`` overrides to an argparse parser."""
    names = ", ".join(f"{n}={c.name}" for n, c in CONFIGS.items())
    parser.add_argument("--config", type=int, default=default,
                        help=f"config number ({names}); default {default}")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override config fields, e.g. test_cfg.score_thr=0.2")
    return parser


def config_parser(description, default=DEFAULT_CONFIG, weights=False):
    """The parser every script starts from: its docstring as the help text, ``--config``,
    the ``key=value`` overrides and ``--device``. ``weights``: also ``--weights FILE`` and
    ``--no-download``, and --config defaults to None, so that the number a self-describing
    file records can be told from one the user gave (tools/weights/describe.py; ``default``
    applies otherwise)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, default)
    add_device_argument(parser)
    if weights:
        parser.set_defaults(config=None)
        parser.add_argument("--weights", metavar="FILE",
                            help="weight file; one written by train.py also gives the config "
                                 "number, its overrides and class names (else --config, "
                                 f"default {default})")
        parser.add_argument("--no-download", action="store_true",
                            help="never fetch the config's published weights when they are "
                                 "absent (also SOLOV2_OFFLINE=1); see README, Weights")
    return parser


def config_table(cfg):
    """The resolved config as an aligned two-column text table."""
    from tabulate import tabulate

    rows = [(key, repr(value)) for key, value in cfg.fields()]
    return f"config: {cfg.name}\n" + tabulate(rows, headers=("field", "value"))


__all__ = ["CONFIGS", "DEFAULT_CONFIG", "FIELDS", "Published", "Section", "SOLOv2Config",
           "add_config_arguments", "apply_overrides", "config_parser", "config_table",
           "load_config", "nonnegative_int", "positive_int", "positive_int_list", "probability"]
