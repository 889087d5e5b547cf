"""Exporting a config's weights to a deployable inference model: Paddle Inference and ONNX.

tools/export_model.py is the command line; :func:`export` writes into the output folder
    model.json, model.pdiparams   the static graph (paddle.jit.save, Paddle 3 "PIR" format)
    model.onnx                    the same graph through paddle2onnx, when it converts
    network.json / .pdiparams / .onnx   the network alone (no post-processing)
    deploy.json                   preprocessing and sizes a predictor needs besides the graph
all made in a temporary folder beside it and moved in when complete, deploy.json last.
model.*: inputs image [1, 3, H, W] (normalised, padded to multiples of 32), im_shape [1, 2]
(resized height, width) and scale_factor [1, 2] (resized / original); outputs: masks,
labels, scores, boxes, post-processing included (model/export.py, SOLOv2Inference): the
file to deploy without this repo. network.*: image in, cate_scores, kernels and mask_feat
out; this repo's exported engines run it followed by the numpy post-processing of the
dygraph engine (tools/inference/backends.py, mode 'network'). ``--split`` also writes
postprocess.*, the post-processing graph alone, which tools/benchmark.py --mode split times.

Run the result with ``python demo.py --engine paddle-inference`` or ``--engine onnx``
(tools/inference/backends.py), which need neither the model code nor the weights file.

What is known not to work, with Paddle 3.3.1, paddle2onnx 2.1.0 and onnxruntime 1.32 (see
README, "Deployment and speed"):
  * Paddle Inference with oneDNN cannot run any resize op of a Paddle 3 graph
    ("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>",
    Paddle issue #79749) and does not build this model's predictor either, so the Paddle
    Inference engine falls back to running without oneDNN.
  * paddle2onnx 2.1.0 writes an uninitialised epsilon for GroupNorm (it becomes
    InstanceNormalization); this file overwrites it with the model's own value.
  * paddle2onnx 2.1.0 stops at a resize given by a scale factor in a Paddle 3 graph ("the
    0th elementwise MUST be ir::FloatAttribute": Paddle stores the scales as doubles), so
    the model resizes to explicit sizes (model/head.py, model/mask_feat_head.py).
"""

import contextlib
import json
import os
import shutil
import tempfile

from ..data.preprocess import preprocess_style
from ..files import TMP_PREFIX, OutputError, check_writable, describe_os_error, write_text
from ..inference.backends import DEPLOY_FORMAT, postprocess_settings

ONNX_OPSET = 19  # DeformConv (DCNv2) exists in ONNX from opset 19


def input_specs(cfg, part):
    """paddle.static.InputSpec list for one part of SOLOv2Inference."""
    from paddle.static import InputSpec

    cells = sum(g * g for g in cfg.num_grids)
    image = InputSpec([1, 3, None, None], "float32", "image")
    shapes = [InputSpec([1, 2], "float32", "im_shape"),
              InputSpec([1, 2], "float32", "scale_factor")]
    if part == "network":
        return [image]
    if part == "postprocess":
        return [InputSpec([1, cells, cfg.num_classes], "float32", "cate_scores"),
                InputSpec([1, cells, cfg.mask_feat_channels], "float32", "kernels"),
                InputSpec([1, cfg.mask_feat_channels, None, None], "float32", "mask_feat")
                ] + shapes
    return [image] + shapes


def group_norm_epsilon(layer):
    """The one epsilon of every GroupNorm under ``layer`` (None if there is none)."""
    import paddle.nn as nn

    values = {float(sub._epsilon) for sub in layer.sublayers() if isinstance(sub, nn.GroupNorm)}
    if len(values) > 1:
        raise ValueError(f"GroupNorm layers use several epsilons {sorted(values)}; the ONNX "
                         "fix-up below assumes one")
    return values.pop() if values else None


AUTOINSTALL = "POLYGRAPHY_AUTOINSTALL_DEPS"


@contextlib.contextmanager
def no_pip_installs():
    """Context in which paddle2onnx cannot make Polygraphy pip-install packages.

    paddle2onnx 2.1.0 folds constants with Polygraphy and sets POLYGRAPHY_AUTOINSTALL_DEPS=1
    just before importing it, so a first export ran ``pip install onnx_graphsurgeon`` from
    an NVIDIA index into the user's environment (and, offline, waited for the network).
    Polygraphy reads the switch into ``polygraphy.config`` when that is first imported:
    importing it here first, with the switch off, keeps it off. What the folding needs,
    onnx-graphsurgeon, is in requirements-deploy.txt. The variable is restored afterwards,
    so child processes do not inherit paddle2onnx's value either.
    """
    before = os.environ.get(AUTOINSTALL)
    config = None
    try:
        os.environ[AUTOINSTALL] = "0"
        import polygraphy.config as config
    except ImportError:
        pass  # not installed: nothing of it can install anything
    if config is not None:
        config.AUTOINSTALL_DEPS = False
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(AUTOINSTALL, None)
        else:
            os.environ[AUTOINSTALL] = before


def to_onnx(prefix, onnx_path, gn_epsilon, opset=ONNX_OPSET):
    """Convert ``prefix``.json/.pdiparams to ONNX. Returns None on success, else the reason."""
    try:
        import onnx
        import paddle2onnx
    except ImportError as err:
        return (f"{err.name} is not installed (pip install -r requirements-deploy.txt); "
                "no ONNX model written")
    try:
        with no_pip_installs():
            paddle2onnx.export(prefix + ".json", prefix + ".pdiparams", onnx_path,
                               opset_version=opset, enable_onnx_checker=True)
    except Exception as err:  # paddle2onnx raises plain Exceptions for unsupported ops
        return f"paddle2onnx failed: {err}"
    if not os.path.exists(onnx_path):
        return "paddle2onnx wrote no file (see its log above)"
    # paddle2onnx 2.1.0 lowers group_norm to InstanceNormalization but fills its epsilon
    # from uninitialised memory (0.0, 0.0056 or 4e27 in our runs, and NaN masks with 0).
    graph = onnx.load(onnx_path)
    for node in graph.graph.node:
        if node.op_type == "InstanceNormalization" and gn_epsilon is not None:
            for attr in node.attribute:
                if attr.name == "epsilon":
                    attr.f = gn_epsilon
    onnx.save(graph, onnx_path)
    return None


def export(cfg, model_path, output_dir, onnx=True, split=False, log=print, download=True):
    """Export ``cfg`` with the weights at ``model_path`` into ``output_dir``.

    Returns the deploy.json dict (it lists what was written and why ONNX is missing if it
    is). Raises the weight loader's errors for a missing or mismatched weight file, and
    OutputError when ``output_dir`` cannot be written (checked before the export starts).

    The files are made in a temporary folder and then moved into ``output_dir``
    (:func:`publish`): even with two exports into one folder at once, it ends up holding
    one export's files, and while they move in it has no deploy.json.
    """
    import paddle

    from model import build_model
    from model.export import build_inference_model

    from ..files import repo_path
    from ..weights.fetch import resolve_model_path
    from ..weights.load import load_weights

    # The config's own default weights are fetched when absent (tools/weights/fetch.py).
    model_path = resolve_model_path(cfg, repo_path(model_path), allow_download=download,
                                    log=log)
    model = build_model(cfg)
    meta = load_weights(model, model_path, cfg)
    check_writable(output_dir, "export folder")
    parts = ["all", "network", "postprocess"] if split else ["all", "network"]
    names = {"all": "model", "network": "network", "postprocess": "postprocess"}
    info = {"format": DEPLOY_FORMAT, "config": cfg.name, "config_number": cfg.number,
            "weights": os.path.basename(model_path),
            "preprocess": preprocess_style(cfg, meta), "test_size": list(cfg.test_size),
            "pixel_mean": list(cfg.pixel_mean), "pixel_std": list(cfg.pixel_std),
            "num_classes": cfg.num_classes, "paddle": paddle.__version__,
            "postprocess": postprocess_settings(cfg),
            "parts": [names[p] for p in parts], "onnx": {}}
    epsilon = group_norm_epsilon(model)
    staging = staging_folder(output_dir)
    try:
        for part in parts:
            prefix = os.path.join(staging, names[part])
            layer = build_inference_model(cfg, model, part)
            static = paddle.jit.to_static(layer, input_spec=input_specs(cfg, part),
                                          full_graph=True)
            paddle.jit.save(static, prefix)
            log(f"saved {names[part]}.json / .pdiparams")
            if onnx:
                problem = to_onnx(prefix, prefix + ".onnx", epsilon)
                info["onnx"][names[part]] = problem or "ok"
                log(f"saved {names[part]}.onnx" if problem is None
                    else f"no ONNX for {part}: {problem}")
        write_text(os.path.join(staging, "deploy.json"), json.dumps(info, indent=1))
        moved = publish(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {', '.join(moved)} into {output_dir}")
    return info


# Files an export may have left in its folder (paddle.jit.save's graph and weights, the ONNX
# model); publish() removes those the new export did not make, so no stale model.onnx
# outlives a run whose conversion failed.
PART_NAMES = ("model", "network", "postprocess")
PART_SUFFIXES = (".json", ".pdiparams", ".pdiparams.info", ".pdmodel", ".onnx")


def staging_folder(output_dir):
    """A new temporary folder beside ``output_dir`` (inside it when its parent is
    read-only): on the same file system, so its files can be renamed into place."""
    output_dir = os.path.abspath(output_dir)
    prefix = f"{TMP_PREFIX}{os.path.basename(output_dir)}-"
    try:
        return tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(output_dir))
    except OSError:
        pass
    try:
        return tempfile.mkdtemp(prefix=TMP_PREFIX, dir=output_dir)
    except OSError as err:
        raise OutputError(describe_os_error(err, output_dir)) from None


def publish(staging, output_dir):
    """Move every file of ``staging`` into ``output_dir``, deploy.json last, and remove the
    emptied ``staging``; returns the names moved.

    deploy.json is removed first and put back last, so a predictor started meanwhile is
    told to export (tools/inference/backends.py reads deploy.json before the graphs)
    instead of loading files of two exports; an exclusive lock on the folder keeps two
    exports from interleaving their moves."""
    names = sorted(n for n in os.listdir(staging) if n != "deploy.json") + ["deploy.json"]
    deploy = os.path.join(output_dir, "deploy.json")
    try:
        with _folder_lock(output_dir):
            for name in names:  # on disk before they are renamed into sight
                with open(os.path.join(staging, name), "rb") as f:
                    os.fsync(f.fileno())
            if os.path.exists(deploy):
                os.remove(deploy)
            for name in names[:-1]:
                os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
            stale = {part + suffix for part in PART_NAMES for suffix in PART_SUFFIXES}
            for name in sorted((stale - set(names)) & set(os.listdir(output_dir))):
                os.remove(os.path.join(output_dir, name))
            os.replace(os.path.join(staging, "deploy.json"), deploy)
        os.rmdir(staging)
    except OSError as err:
        raise OutputError(describe_os_error(err, output_dir)) from None
    return names


@contextlib.contextmanager
def _folder_lock(folder):
    """An exclusive flock on ``folder`` itself (no lock file is left behind); no lock
    where fcntl does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
