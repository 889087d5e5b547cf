"""The numbers a training run records: OUTPUT/metrics.jsonl, VisualDL on request, and the
curves tools/plot_metrics.py draws from them.

``metrics.jsonl`` holds one json object per line::

    {"iteration": 0, "time": 1718000000.0, "event": "start"}
    {"iteration": 10, "time": 1718000012.5, "train/loss": 2.91, "train/loss_ins": 2.66,
     "train/loss_cate": 0.25, "train/lr": 0.00208, "train/step_time": 1.21,
     "train/data_time": 0.004}
    {"iteration": 200, "time": 1718000300.1, "eval/AP": 0.01, "eval/AP50": 0.03, ...}

``time`` is seconds since the epoch; the train values are the means the log line shows.
Every start (new or resumed) appends a ``start`` record with the iteration it starts at,
and the file is only ever appended to. Each record goes to the file in one ``write`` of a
whole line, so a kill leaves complete lines; only a full disk or a power cut can leave the
last line short. :class:`MetricsFile` ends such a line before it appends (so it stays the
only broken one) and :func:`read_metrics` skips lines that do not parse.
"""

import io
import json
import math
import os
import time

from ..errors import MissingInputError, UserError
from ..files import OutputError, describe_os_error, write_bytes

METRICS_FILE = "metrics.jsonl"
VDL_FOLDER = "vdl"
LOSSES = ("train/loss", "train/loss_ins", "train/loss_cate")
APS = ("eval/AP", "eval/AP50", "eval/AP75")


# --------------------------------------------------------------------------- writing
class MetricsFile:
    """Appends records to ``path`` (created on the first record)."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def _open(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self.fd).st_size
            if size and os.pread(self.fd, 1, size - 1) != b"\n":
                # A line cut short by a full disk: end it, so the next record is whole.
                self._write(b"\n")
        except OSError as err:
            raise OutputError(describe_os_error(err, self.path)) from None

    def _write(self, data):
        while data:  # a regular file takes it in one call unless the disk is full
            data = data[os.write(self.fd, data):]

    def add(self, iteration, values, **fields):
        """Append {iteration, time, **fields, **values}; a NaN or infinite value is
        written as null (json has no spelling for it)."""
        record = {"iteration": int(iteration), "time": round(time.time(), 3), **fields}
        record.update({k: float(v) if math.isfinite(v) else None for k, v in values.items()})
        if self.fd is None:
            self._open()
        try:
            self._write((json.dumps(record) + "\n").encode("utf-8"))
        except OSError as err:
            raise OutputError(describe_os_error(err, self.path)) from None

    def start(self, iteration):
        """Mark that a run starts (or resumes) at ``iteration``."""
        self.add(iteration, {}, event="start")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def require_visualdl():
    """VisualDL's LogWriter; a one-line UserError when visualdl is not installed."""
    try:
        from visualdl import LogWriter
    except ImportError:
        raise UserError("--vdl needs VisualDL, which is not installed: pip install visualdl "
                        "(or train without --vdl; metrics.jsonl has the same numbers)") from None
    return LogWriter


class VisualDLScalars:
    """The same scalars as VisualDL scalars in OUTPUT/vdl (``visualdl --logdir OUTPUT/vdl``)."""

    def __init__(self, output_dir):
        self.writer = require_visualdl()(logdir=os.path.join(output_dir, VDL_FOLDER))

    def add(self, iteration, values):
        for tag, value in values.items():
            self.writer.add_scalar(tag=tag, value=value, step=iteration)

    def close(self):
        self.writer.close()


# --------------------------------------------------------------------------- reading
def metrics_path(run_dir):
    return os.path.join(run_dir, METRICS_FILE)


def read_metrics(path):
    """The records of ``path`` as the run's history: lines that do not parse (a line cut
    short) are skipped, and when a ``start`` record says the run resumed at iteration s,
    what an earlier attempt recorded after s (and then lost with the kill) is dropped.
    Start records themselves are not returned."""
    if not os.path.isfile(path):
        raise MissingInputError(f"{path} does not exist; train.py writes it into "
                                "train_cfg.output_dir/<config name>/")
    records = []
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
                iteration = int(record["iteration"])
            except (ValueError, KeyError, TypeError):
                continue
            if record.get("event") == "start":
                records = [r for r in records if r["iteration"] <= iteration]
            else:
                records.append(record)
    return records


def curve(records, tag):
    """(iterations, values) of ``tag`` over ``records``, where it was recorded."""
    points = [(r["iteration"], r[tag]) for r in records if r.get(tag) is not None]
    return [i for i, _ in points], [v for _, v in points]


# --------------------------------------------------------------------------- plotting
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("plotting needs matplotlib, which is not installed: "
                        "pip install matplotlib") from None
    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(records, png_path, title=""):
    """Draw the loss and its parts (left) and the periodic mask AP (right) of ``records``
    into ``png_path``; returns the path."""
    plt = _pyplot()
    fig, (losses, aps) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        for tag in LOSSES:
            iters, values = curve(records, tag)
            if iters:
                losses.plot(iters, values, label=tag.split("/")[1])
        losses.set(xlabel="iteration", ylabel="loss (mean over the log window)",
                   title="training loss")
        for tag in APS:
            iters, values = curve(records, tag)
            if iters:
                aps.plot(iters, values, marker="o", label=tag.split("/")[1])
        aps.set(xlabel="iteration", ylabel="mask AP", title="periodic evaluation")
        for axes in (losses, aps):
            if axes.get_legend_handles_labels()[0]:
                axes.legend()
            else:
                axes.text(0.5, 0.5, "nothing recorded yet", ha="center",
                          transform=axes.transAxes)
            axes.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return write_bytes(png_path, buffer.getvalue())
