"""Exports made on first use, for ``Predictor(engine="onnx")`` or ``"paddle-inference"``
given no exported folder.

    $SOLOV2_HOME/exports/<config name>-<weights file stem>/

holds what :func:`tools.deploy.export.export` writes (with ONNX when the onnx engine asks:
the conversion takes most of an export's time) plus ``source.json``, a record of what it
was made from: the weight file (absolute path, size, modification time) and the config's
architecture fields. A folder whose record differs from the weights and config asked for
now (the file was retrained, an architecture override changed), or that lacks the files
the engine runs, is exported again; otherwise it is reused.
The post-processing settings are not part of the record: the exported engines run the
network graph with the config's own numpy post-processing (tools/inference/backends.py),
so they take effect without a new export. One process exports a given folder at a time;
another asking for it meanwhile waits and then reuses it.
"""

import contextlib
import json
import os

from ..files import repo_path, write_text
from ..inference.backends import BackendError
from ..weights.fetch import cache_home, resolve_model_path
from ..weights.load import MissingWeightsError, missing_weights_message

RECORD = "source.json"
# Fields that do not change the exported network: where files are, training settings, the
# test size (the graph takes any padded size) and the post-processing (see above).
NOT_IN_GRAPH = ("model_path", "test_size", "classes_path")
NOT_IN_GRAPH_PREFIXES = ("train_", "val_", "test_", "train_cfg.", "eval_cfg.", "test_cfg.")


def export_folder(cfg, weights, environ=None):
    """$SOLOV2_HOME/exports/<config name>-<weights file stem>."""
    stem = os.path.splitext(os.path.basename(weights))[0]
    return os.path.join(cache_home(environ), "exports", f"{cfg.name}-{stem}")


def source_record(cfg, weights):
    """What an export of ``cfg`` with ``weights`` is made from (see the module docstring)."""
    stat = os.stat(weights)
    fields = {key: repr(value) for key, value in cfg.fields()
              if key not in NOT_IN_GRAPH and not key.startswith(NOT_IN_GRAPH_PREFIXES)}
    return {"weights": os.path.abspath(weights), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "config": cfg.name, "fields": fields}


def _reusable(folder, record, engine):
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            found = json.load(f)
        with open(os.path.join(folder, "deploy.json"), encoding="utf-8") as f:
            deploy = json.load(f)
    except (OSError, ValueError):
        return False
    if found != record:
        return False
    needed = "network.onnx" if engine == "onnx" else "network.json"
    return "network" in deploy.get("parts", ()) and os.path.exists(os.path.join(folder,
                                                                                 needed))


@contextlib.contextmanager
def _lock(folder):
    import fcntl

    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(folder + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def exported_model_dir(cfg, model_path, engine, download=True, log=print, environ=None):
    """The exported folder for ``cfg`` with the weights at ``model_path`` (the config's
    default weights fetched first when absent, unless ``download`` is False), exported now
    unless the cache holds a current one. Raises MissingWeightsError, the export's errors,
    or BackendError when ONNX is asked for and the conversion failed."""
    from .export import export

    path = resolve_model_path(cfg, repo_path(model_path), allow_download=download,
                              environ=environ, log=log)
    if not path or not os.path.exists(path):
        raise MissingWeightsError(missing_weights_message(path, cfg))
    folder = export_folder(cfg, path, environ)
    record = source_record(cfg, path)
    with _lock(folder):
        if _reusable(folder, record, engine):
            return folder
        log(f"exporting {cfg.name} with {os.path.basename(path)} for --engine {engine} into "
            f"{folder} (once; later runs reuse it)")
        info = export(cfg, path, folder, onnx=engine == "onnx", log=log, download=False)
        write_text(os.path.join(folder, RECORD), json.dumps(record, indent=1))
    if engine == "onnx" and info["onnx"].get("network") != "ok":
        raise BackendError(f"the export in {folder} has no ONNX model: "
                           f"{info['onnx'].get('network')}")
    return folder
