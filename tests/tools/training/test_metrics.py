"""metrics.jsonl: appended records, resumed runs, lines cut short, kills; VisualDL on
request; the plot."""

import json
import math
import os
import signal
import subprocess
import sys
import time
import types

import cv2
import numpy as np
import pytest

from tools.errors import MissingInputError, UserError
from tools.training.metrics import (
    MetricsFile,
    VisualDLScalars,
    curve,
    plot_metrics,
    read_metrics,
    require_visualdl,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def write(path, *entries):
    out = MetricsFile(str(path))
    for entry in entries:
        if entry[0] == "start":
            out.start(entry[1])
        else:
            out.add(*entry)
    out.close()


def test_records_round_trip_with_iteration_and_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    before = time.time()
    write(path, ("start", 0), (10, {"train/loss": 2.5, "train/lr": 0.01}),
          (20, {"train/loss": 2.0, "eval/AP": math.nan}))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["event"] == "start"
    records = read_metrics(str(path))
    assert [r["iteration"] for r in records] == [10, 20]
    assert records[0]["train/lr"] == 0.01 and before - 1 <= records[0]["time"] <= time.time() + 1
    assert records[1]["eval/AP"] is None  # json has no NaN; written as null
    assert curve(records, "train/loss") == ([10, 20], [2.5, 2.0])
    assert curve(records, "eval/AP") == ([], [])


def test_a_resumed_run_appends_and_replaces_what_the_killed_run_logged_after_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # The first run logged up to 30, but its last checkpoint was at 20; the resumed run
    # starts at 20 and logs 30 and 40 again.
    write(path, ("start", 0), (10, {"train/loss": 3.0}), (20, {"train/loss": 2.0}),
          (30, {"train/loss": 9.0}))
    write(path, ("start", 20), (30, {"train/loss": 1.5}), (40, {"train/loss": 1.0}))
    assert len(path.read_text().splitlines()) == 7  # appended, nothing rewritten
    assert curve(read_metrics(str(path)), "train/loss") == ([10, 20, 30, 40],
                                                            [3.0, 2.0, 1.5, 1.0])


def test_a_line_cut_short_is_skipped_and_the_next_record_starts_on_its_own_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write(path, (10, {"train/loss": 3.0}), (20, {"train/loss": 2.0}))
    with open(path, "ab") as f:
        f.write(b'{"iteration": 30, "time": 17, "train/lo')  # a full disk's short write
    assert curve(read_metrics(str(path)), "train/loss") == ([10, 20], [3.0, 2.0])
    write(path, (40, {"train/loss": 1.0}))
    lines = path.read_bytes().split(b"\n")
    assert lines[2].endswith(b"train/lo") and json.loads(lines[3])["iteration"] == 40
    assert curve(read_metrics(str(path)), "train/loss") == ([10, 20, 40], [3.0, 2.0, 1.0])


WRITER = """
import sys
sys.path.insert(0, {root!r})
from tools.training.metrics import MetricsFile
out = MetricsFile({path!r})
out.start(0)
values = {{"train/loss_%d" % k: 0.5 for k in range(40)}}  # about 1 kB a line
i = 0
while True:
    i += 1
    out.add(i, values)
    if i == 200:
        print("ready", flush=True)
"""


def test_a_killed_writer_leaves_only_whole_lines(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=ROOT, path=path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # killed while it writes as fast as it can
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = open(path, "rb").read()
    assert data.endswith(b"\n")
    lines = data.splitlines()
    assert len(lines) > 200
    iterations = [json.loads(line)["iteration"] for line in lines[1:]]
    assert iterations == list(range(1, len(lines)))
    assert len(read_metrics(path)) == len(lines) - 1


def test_reading_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(MissingInputError, match="metrics.jsonl does not exist"):
        read_metrics(str(tmp_path / "metrics.jsonl"))


def test_visualdl_missing_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # import fails as if not installed
    with pytest.raises(UserError) as caught:
        require_visualdl()
    assert "pip install visualdl" in str(caught.value) and "\n" not in str(caught.value)


def test_visualdl_gets_the_same_scalars(monkeypatch, tmp_path):
    calls = []

    class LogWriter:
        def __init__(self, logdir):
            calls.append(("logdir", logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append("closed")

    monkeypatch.setitem(sys.modules, "visualdl", types.SimpleNamespace(LogWriter=LogWriter))
    vdl = VisualDLScalars(str(tmp_path))
    vdl.add(10, {"train/loss": 2.0, "train/lr": 0.01})
    vdl.close()
    assert calls == [("logdir", str(tmp_path / "vdl")), ("train/loss", 2.0, 10),
                     ("train/lr", 0.01, 10), "closed"]


BLUE = np.array([180, 119, 31])  # matplotlib's first line colour #1f77b4, as BGR


def blue_pixels(png):
    image = cv2.imread(str(png))
    return int((np.abs(image.astype(int) - BLUE).sum(axis=2) < 30).sum()), image.shape


def test_plot_draws_the_loss_and_ap_curves(tmp_path):
    records = [{"iteration": i, "train/loss": 3.0 / i, "train/loss_ins": 2.0 / i,
                "train/loss_cate": 1.0 / i} for i in range(1, 50)]
    records += [{"iteration": 25, "eval/AP": 0.1, "eval/AP50": 0.2, "eval/AP75": 0.05},
                {"iteration": 49, "eval/AP": 0.2, "eval/AP50": 0.3, "eval/AP75": 0.1}]
    drawn = plot_metrics(records, str(tmp_path / "curves.png"))
    empty = plot_metrics([], str(tmp_path / "empty.png"))
    assert open(drawn, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    count, shape = blue_pixels(drawn)
    assert shape == (450, 1200, 3)
    assert count > 300  # the loss line and the AP line are drawn
    assert blue_pixels(empty)[0] < 20  # nothing recorded: no curve
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UserError, match="plotting needs matplotlib.*pip install matplotlib"):
        plot_metrics([], str(tmp_path / "x.png"))
    assert not os.path.exists(tmp_path / "x.png")
