"""Videos and cameras (tools/inference/video.py): every frame through the Predictor's loop in
order, the drawn video's frame count and rate, damaged files read as far as they go, and a
camera recording finished on Ctrl-C."""

import importlib
import os

import cv2
import numpy as np
import pytest

from tests.fixtures.video import FakeCapture, fake_camera
from tools.files import OutputError
from tools.inference import Predictor
from tools.inference.instances import decode_rle
from tools.inference.video import (
    AtomicVideoWriter,
    FrameReader,
    VideoError,
    predict_video,
    probe_video,
    record_camera,
    split_inputs,
)
from tools.weights.standin import converted_checkpoint

api = importlib.import_module("tools.inference.api")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SMALL = ["test_size=(128, 192)"]
THRESH = 0.2


def scene(k, h=97, w=131):
    """Frame k of a short clip: a crop of a photo moving to the right (BGR)."""
    photo = cv2.imread(os.path.join(ROOT, "images", "test", "chelsea.png"))
    return np.ascontiguousarray(photo[20:20 + h, 4 * k:4 * k + w])


def write_clip(path, fourcc="mp4v", frames=12, fps=7, h=97, w=131):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for k in range(frames):
        writer.write(scene(k, h, w))
    writer.release()
    return str(path)


def decoded_frames(path):
    """Every frame cv2 decodes from ``path``, RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames, capture


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    weights = converted_checkpoint(str(tmp_path_factory.mktemp("video") / "w.pdparams"), 2, 80)
    return Predictor(config=2, weights=weights, overrides=SMALL, device="cpu", download=False)


def test_every_frame_is_predicted_in_order_at_the_same_count_and_rate(predictor, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    info = probe_video(clip)
    assert (info.frames, info.fps) == (12, 7)
    out = str(tmp_path / "out" / "clip.mp4")
    done = predict_video(predictor, info, out, THRESH, record_name="clip.mp4")
    assert done.output == out and done.frames == done.written == 12 and done.missing == 0
    frames, capture = decoded_frames(out)
    assert len(frames) == capture.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert capture.get(cv2.CAP_PROP_FPS) == 7
    # MPEG-4 stores 4:2:0 colour: an odd size loses its last row and column.
    assert frames[0].shape == (96, 130, 3)
    assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # no temporary left
    # Frame k's detections are those of the k-th decoded input frame, predicted alone
    # (checked at the first, a middle and the last frame).
    inputs, _ = decoded_frames(clip)
    assert [r["frame"] for r in done.records] == list(range(12))
    assert done.instances == sum(len(r["detections"]) for r in done.records) > 0
    compared = 0
    for k in (0, 5, 11):
        expected = predictor(inputs[k]).keep(THRESH)
        detections = done.records[k]["detections"]
        assert [d["class_id"] for d in detections] == expected.labels.tolist()
        for det, mask in zip(detections, expected.masks):
            np.testing.assert_array_equal(decode_rle(det["mask"]), mask)
        if len(expected):  # the output frame is the drawing, nearer it than the input
            drawn = expected.draw()[:96, :130].astype(int)
            got = frames[k].astype(int)
            assert np.abs(got - drawn).mean() < np.abs(got - inputs[k][:96, :130]).mean()
            compared += 1
    assert compared > 0


def test_garbage_named_mp4_is_refused_and_other_names_are_tried_as_images(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    with pytest.raises(VideoError, match="cannot read the video .*garbage.mp4"):
        split_inputs([str(garbage)])
    other = tmp_path / "notes.xyz"
    other.write_bytes(b"x" * 100)
    clip = str(tmp_path / "clip.bin")  # a video under a name no list knows
    os.rename(write_clip(tmp_path / "clip.mp4"), clip)
    images, videos = split_inputs([str(other), clip])
    assert images == [str(other)] and [v.path for v in videos] == [clip]


def test_a_truncated_avi_gives_the_frames_before_the_cut_and_counts_the_rest(predictor,
                                                                             tmp_path):
    # A cut .mp4 cannot be opened at all (cv2 writes its index last); MJPG in .avi decodes
    # frame by frame, so a cut file still has its first frames.
    clip = write_clip(tmp_path / "clip.avi", fourcc="MJPG")
    data = open(clip, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) * 2 // 3])
    readable, _ = decoded_frames(cut)
    assert 0 < len(readable) < 12
    info = probe_video(str(cut))
    assert info.frames == 12  # the header still lists them all
    done = predict_video(predictor, info, str(tmp_path / "cut.mp4"), THRESH)
    assert done.frames == len(readable) and done.missing == 12 - len(readable)
    frames, _ = decoded_frames(done.output)
    assert len(frames) == len(readable)


def test_the_reader_steps_over_damaged_frames_and_stops_at_the_end():
    reader = FrameReader(FakeCapture(10, bad={3, 4, 5}), count=10)
    frames = list(reader.frames())
    reader.stop()
    assert [int(f[0, 0, 0]) for f in frames] == [0, 10, 20, 60, 70, 80, 90]
    assert reader.decoded == 7 and reader.missing == 3
    # Without a frame count (a camera), the first failure is the end.
    reader = FrameReader(FakeCapture(10, bad={3}))
    assert len(list(reader.frames())) == 3
    reader.stop()


class StandIn:
    """A backend drawing one mask over each frame's top-left quarter; raises
    KeyboardInterrupt at call ``interrupt_at`` as Ctrl-C would in the main thread."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def __call__(self, batch, crop_hws, ori_hws, times):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        results = []
        for h, w in ori_hws:
            mask = np.zeros((1, h, w), bool)
            mask[0, :h // 2, :w // 2] = True
            results.append({"masks": mask, "labels": np.array([3]),
                            "scores": np.array([0.9], np.float32),
                            "boxes": np.array([[0, 0, w // 2, h // 2]], np.float32)})
        return results


def stand_in_predictor(monkeypatch, backend):
    monkeypatch.setattr(api, "load_backend", lambda *args, **kwargs: (backend, "mmcv"))
    return Predictor(config=2, overrides=SMALL, device="cpu", download=False)


class Clock:
    """Seconds for the reader's timestamps: frame k is read at k * step."""

    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self):
        self.calls += 1
        return (self.calls - 1) * self.step


@pytest.mark.parametrize("step, written", [(0.1, 9), (0.2, 17)])
def test_camera_until_it_stops_sending_frames(monkeypatch, tmp_path, step, written):
    predictor = stand_in_predictor(monkeypatch, StandIn())
    capture = FakeCapture(9, fps=10.0)
    opened = fake_camera(monkeypatch, capture)
    out = str(tmp_path / "camera0.mp4")
    done = record_camera(predictor, 0, out, 0.5, clock=Clock(step), record_name="camera0")
    assert opened == [0] and capture.released
    assert done.frames == 9 and not done.interrupted
    # At 10 fps, frames read 0.2 s apart are each held for two slots: real time.
    assert done.written == written
    frames, saved = decoded_frames(out)
    assert len(frames) == written and saved.get(cv2.CAP_PROP_FPS) == 10
    assert frames[0][:24, :32].mean() != frames[0][24:, 32:].mean()  # the mask is drawn
    assert [r["frame"] for r in done.records] == list(range(9))
    assert os.listdir(tmp_path) == ["camera0.mp4"]


def test_ctrl_c_still_finishes_the_recording(monkeypatch, tmp_path):
    predictor = stand_in_predictor(monkeypatch, StandIn(interrupt_at=6))
    fake_camera(monkeypatch, FakeCapture(1000))
    out = str(tmp_path / "camera1.mp4")
    lines = []
    done = record_camera(predictor, 1, out, 0.5, clock=Clock(0.1), log=lines.append)
    assert done.interrupted and lines == ["interrupted: finishing the recording"]
    assert 1 <= done.frames <= 5 and done.output == out
    frames, _ = decoded_frames(out)
    assert len(frames) == done.written >= done.frames
    assert os.listdir(tmp_path) == ["camera1.mp4"]


def test_a_camera_that_does_not_open_is_one_error(monkeypatch, tmp_path):
    predictor = stand_in_predictor(monkeypatch, StandIn())

    class Closed(FakeCapture):
        def isOpened(self):
            return False

    fake_camera(monkeypatch, Closed(0))
    with pytest.raises(VideoError, match="cannot open camera 7"):
        record_camera(predictor, 7, str(tmp_path / "c.mp4"), 0.5)
    assert os.listdir(tmp_path) == []


def test_a_writer_whose_file_lacks_frames_raises_and_leaves_nothing(tmp_path):
    # cv2.VideoWriter reports no write errors: the count in the finished file is checked.
    writer = AtomicVideoWriter(str(tmp_path / "v.mp4"), 5)
    for k in range(3):
        writer.write(scene(k))
    writer.written += 2  # as if two frames had been lost on the way to the disk
    with pytest.raises(OutputError, match="5 frames were encoded but the file holds 3"):
        writer.commit()
    assert os.listdir(tmp_path) == []
