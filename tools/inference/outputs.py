"""Where demo.py's drawn images go: one file per input, none of them onto an input.

Each input keeps its path relative to the folder all inputs share, under the output
folder: ``a/x.jpg`` and ``b/x.jpg`` become ``OUT/a/x.jpg`` and ``OUT/b/x.jpg``, while the
images of one folder (or one glob over a folder) keep their plain names, ``OUT/x.jpg``.
Every output is planned, and checked, before the first image is predicted: a clash or a
folder that cannot be written would otherwise surface after all the work is done.
"""

import os

from ..data.preprocess import list_images
from ..errors import UserError
from ..files import check_writable
from .visualize import drawn_path


class OutputConflictError(UserError):
    """The outputs asked for would overwrite an input or each other."""


def list_inputs(specs):
    """The image files named by ``specs`` (one file, folder or glob, or a list of them),
    in order, each file once even when two specs name it."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    paths, seen = [], set()
    for spec in specs:
        for path in list_images(spec):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                paths.append(path)
    return paths


def common_folder(paths):
    """The deepest folder holding every one of ``paths`` (absolute)."""
    return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])


def plan_outputs(paths, output_dir, name=drawn_path):
    """The drawn image's path for each input path, mirrored under ``output_dir`` (see the
    module docstring); ``name(mirrored path)`` gives the output's name (a video's differs).
    Raises OutputConflictError when an output would be one of the inputs or two inputs
    would be drawn to one file; nothing has been written then."""
    if not paths:
        return []
    base = common_folder(paths)
    outputs = [name(os.path.join(output_dir, os.path.relpath(os.path.abspath(p), base)))
               for p in paths]
    by_name = {os.path.realpath(p): p for p in paths}
    by_file = {_identity(p): p for p in paths}  # also a hard link to an input
    by_file.pop(None, None)
    taken = {}
    for path, out in zip(paths, outputs):
        source = by_name.get(os.path.realpath(out)) or by_file.get(_identity(out))
        if source is not None:
            raise OutputConflictError(
                f"--output {output_dir} would overwrite the input {source} with its drawing; "
                "pass an output folder that holds none of the inputs, e.g. --output "
                f"{os.path.join(output_dir, 'drawn')}")
        key = os.path.normcase(os.path.realpath(out))
        if key in taken:
            raise OutputConflictError(
                f"{taken[key]} and {path} would both be drawn to {out}; rename one or draw "
                "them in separate runs")
        taken[key] = path
    return outputs


def check_output_folders(outputs, output_dir):
    """check_writable on ``output_dir`` and on every folder the outputs go to, before any
    image is predicted."""
    check_writable(output_dir, "output folder")
    for folder in sorted({os.path.dirname(os.path.abspath(out)) for out in outputs}):
        check_writable(folder, "output folder")


def _identity(path):
    """(device, inode) of an existing file, None when ``path`` does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)
