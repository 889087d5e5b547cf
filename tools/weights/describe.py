"""Weight files that describe themselves, and the config a script rebuilds from one.

train.py records in the meta (tools.weights.files.META_KEY, a table of text) of
``model_final.pdparams``, ``best_model.pdparams`` and its checkpoints:

    config, config_number   the config's name and its --config number
    overrides               json list of the key=value words train.py was given, in order
    num_classes             outputs of the category branch
    class_names             json list of the class names in label order (the training
                            annotation file's categories)
    preprocess              the preprocessing style the weights were trained with

demo.py, eval.py, test_dev.py and tools/export_model.py given such a file (``--weights
FILE``, or a ``model_path=FILE`` / ``<stage>.model_path=FILE`` override) take the config
number, the overrides, num_classes and the class names from it, so no other word is
needed. Words given as well come after the recorded ones, so they win, except where they
contradict what the weights are: another --config, another num_classes, or a classes_path
listing other names is a ConfigError. Files without a description (converted published
files, files of older runs) behave as before: the config comes from --config and the words.
"""

import json
import os

from config import DEFAULT_CONFIG, load_config
from config.checks import parse_override

from ..data.coco import read_class_names
from ..errors import ConfigError
from .files import WeightFileError, load_pdparams

# The keys a description consists of (the meta holds others too: format, iteration, ...).
KEYS = ("config", "config_number", "overrides", "num_classes", "class_names", "preprocess")
# Files that are never pickles with a meta (tools.weights.files.load_any's other kinds).
_NOT_PICKLES = (".pth", ".pt", ".tar")
# Class names shown in a message before "...".
_SHOWN = 5


def description(cfg, overrides, class_names, preprocess):
    """The meta that makes a weight file of ``cfg`` describe itself (all values text). A
    config without a number (not in config.CONFIGS) gives no config_number, and so no
    description that :func:`model_info` would act on."""
    meta = {"config": cfg.name, "overrides": json.dumps(list(overrides)),
            "num_classes": str(cfg.num_classes), "class_names": json.dumps(list(class_names)),
            "preprocess": preprocess}
    if cfg.number is not None:
        meta["config_number"] = str(cfg.number)
    return meta


def model_info(path):
    """The description a weight file carries, decoded: {config, config_number (int),
    overrides (list), num_classes (int), class_names (list or None), preprocess, path};
    None when ``path`` is not a file written by train.py with a description (missing,
    another format, unreadable: loading it reports that). Only the meta is kept."""
    if not path or not os.path.isfile(path) or path.endswith(_NOT_PICKLES):
        return None
    try:
        _, meta = load_pdparams(path)
    except WeightFileError:
        return None
    if "config_number" not in meta:
        return None
    try:
        info = {"config": meta.get("config", ""), "config_number": int(meta["config_number"]),
                "overrides": json.loads(meta.get("overrides", "[]")),
                "num_classes": int(meta["num_classes"]),
                "class_names": (json.loads(meta["class_names"]) if "class_names" in meta
                                else None),
                "preprocess": meta.get("preprocess"), "path": path}
    except (KeyError, ValueError) as err:
        raise WeightFileError(f"{path}: its description (meta) is damaged: {err}") from None
    if not (isinstance(info["overrides"], list)
            and all(isinstance(w, str) for w in info["overrides"])):
        raise WeightFileError(f"{path}: its description (meta) is damaged: overrides are "
                              "not a list of key=value words")
    return info


def _given(words):
    """{key: text} of the key=value words (the last word wins, as in apply_overrides)."""
    found = {}
    for word in words:
        key, sep, text = word.partition("=")
        if sep:
            found[key.strip()] = text.strip()
    return found


def weights_given(weights, overrides, stage):
    """The weight file the command line names for ``stage`` ('test_cfg' or 'eval_cfg'):
    ``--weights``, else a ``<stage>.model_path=`` word, else a ``model_path=`` word (the
    stage's own wins, as in the config); None when none is given. --weights and a word
    naming another file is a ConfigError."""
    given = _given(overrides)
    word_path = None
    for key in (f"{stage}.model_path", "model_path"):
        if key in given:
            word_path = parse_override(key, given[key])
            break
    if weights and word_path and os.path.abspath(word_path) != os.path.abspath(weights):
        raise ConfigError(f"--weights {weights} and {key}={word_path} name two files; "
                          "give one")
    return weights or word_path


def _shown(names):
    more = f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def check_agreement(info, number, overrides):
    """ConfigError when --config ``number`` or a word of ``overrides`` contradicts what the
    weights of ``info`` are: their config, their number of classes, their class names."""
    path, trained = info["path"], info["config_number"]
    if number is not None and number != trained:
        raise ConfigError(f"--config={number} contradicts {path}, which was trained with "
                          f"--config={trained} ({info['config']}); drop --config")
    given = _given(overrides)
    if "num_classes" in given:
        value = parse_override("num_classes", given["num_classes"])
        if value != info["num_classes"]:
            raise ConfigError(f"num_classes={value} contradicts {path}, which predicts "
                              f"{info['num_classes']} classes; drop num_classes=")
    if "classes_path" in given and info["class_names"] is not None:
        value = parse_override("classes_path", given["classes_path"])
        if value is not None and read_class_names(value) != info["class_names"]:
            raise ConfigError(f"classes_path={value} lists {_shown(read_class_names(value))}"
                              f" but {path} was trained on {_shown(info['class_names'])}; "
                              "drop classes_path= (the file's names are used)")


def load_described_config(number, overrides, weights=None, stage="test_cfg"):
    """(config, info) for a script run with ``--config=number`` (None: not given), the
    ``key=value`` ``overrides`` and ``--weights`` (or None) for ``stage``.

    When the weight file describes itself (info, see :func:`model_info`), the config is
    its config number with its recorded overrides, then ``overrides``, with the stage's
    model_path set to the file; otherwise (info None) it is ``number`` (default
    DEFAULT_CONFIG) with ``overrides`` and the stage's model_path set to ``weights``."""
    words = list(overrides)
    path = weights_given(weights, words, stage)
    info = model_info(path)
    if info is None:
        chosen = DEFAULT_CONFIG if number is None else number
        return load_config(chosen, words + ([f"{stage}.model_path={weights}"] if weights
                                            else [])), None
    check_agreement(info, number, words)
    recorded = info["overrides"] + [f"num_classes={info['num_classes']}"]
    try:
        load_config(info["config_number"], recorded)
    except ConfigError as err:
        raise ConfigError(f"{path} was trained with words this code no longer accepts "
                          f"({err}); pass --config and the words yourself") from None
    cfg = load_config(info["config_number"], recorded + words + [f"{stage}.model_path={path}"])
    return cfg, info


def summary(info):
    """One line saying where a described file's config came from."""
    words = " ".join(info["overrides"]) or "no overrides"
    names = _shown(info["class_names"]) if info["class_names"] else "no class names"
    return (f"weights {info['path']} describe themselves: --config={info['config_number']} "
            f"({info['config']}), {words}; {info['num_classes']} classes ({names})")
