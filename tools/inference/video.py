"""Videos and cameras through the one prediction loop: frames in, a drawn video out.

A reader thread decodes frames ahead into a bounded queue; the frames go through
``Predictor.predict`` as RGB arrays (tools.inference.predictor.predict_stream reads any
iterable lazily), worker threads draw them, and an encoder thread writes them in input
order behind the network. So decoding, the network, drawing and encoding overlap, and a
long video never sits in memory.

The output is an MPEG-4 (``mp4v``) ``.mp4`` at the input's frame rate, written under a
temporary name in the output folder and renamed when complete (like every output,
tools/files.py); before the rename it is opened again and its frame count compared with
the frames written, since cv2.VideoWriter reports no write errors (a full disk). MPEG-4
part 2 stores 4:2:0 colour, which needs even sizes: an odd-sized video loses its last row
or column (as cv2.VideoWriter does by itself; done explicitly here).

A damaged file is read as far as it goes: a frame that fails to decode is counted and
the reader moves on (OpenCV's FFmpeg reader steps past it, and later frames can decode
again); after the container's frame count, or after MAX_FAILURES failures in a row, the
video ends. The summary says how many of the frames the container lists could not be
decoded. A cut ``.mp4`` written by cv2 cannot be opened at all (its index, the moov atom,
is written last); a cut ``.avi`` (MJPG) gives every frame before the cut.
"""

import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.preprocess import IMAGE_EXTENSIONS, check_resizable
from ..errors import UserError
from ..files import TMP_PREFIX, OutputError, describe_os_error
from .outputs import common_folder, plan_outputs
from .visualize import drawn_path

# Files with these extensions are videos; a file with neither an image's nor one of these
# extensions is a video when OpenCV opens it as one (else it is read as an image).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".3gp", ".ts", ".mts", ".ogv")
FOURCC = "mp4v"
DEFAULT_FPS = 25.0   # for a file or camera that reports no frame rate
MAX_FAILURES = 100   # failed decodes in a row that end a video (about 3-4 s at 30 fps)
QUEUE_FRAMES = 8     # decoded frames waiting for the network, drawn ones for the encoder


class VideoError(UserError):
    """A video or camera that cannot be opened, or holds no decodable frame."""


def _quiet_ffmpeg():
    # FFmpeg's own lines ("moov atom not found", "header damaged") come on stderr with no
    # file name; the messages here say which file and how many frames. It must be set
    # before OpenCV's FFmpeg backend first runs; a value the user set is kept.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


# ----------------------------------------------------------------------------- inputs
@dataclass
class VideoInfo:
    path: str
    fps: float
    frames: int = None   # the container's frame count (None: not stated)
    width: int = 0
    height: int = 0


def is_video_name(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


def probe_video(path):
    """VideoInfo of ``path`` when OpenCV opens it and decodes a first frame, else None."""
    _quiet_ffmpeg()
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return None
        ok, frame = capture.read()
        if not ok or frame is None:
            return None
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return VideoInfo(path, fps if fps > 0 else DEFAULT_FPS, count if count > 0 else None,
                         frame.shape[1], frame.shape[0])
    finally:
        capture.release()


def split_inputs(paths):
    """(image paths, VideoInfo of each video) in input order. A file with an image's
    extension is an image; one with a video's extension must open as a video (VideoError
    otherwise, before anything is predicted); any other file is a video if it opens as one,
    else an image (the image reader then says whether it is one)."""
    images, videos = [], []
    for path in paths:
        if path.lower().endswith(IMAGE_EXTENSIONS):
            images.append(path)
            continue
        info = probe_video(path)
        if info is not None:
            videos.append(info)
        elif is_video_name(path):
            raise VideoError(f"cannot read the video {path}: OpenCV cannot open it or decode "
                             "its first frame (not a video, damaged, or a codec this OpenCV "
                             "build lacks)")
        else:
            images.append(path)
    return images, videos


def video_output(path):
    """The drawn video's name for a (mirrored) input path: the same name with .mp4."""
    return os.path.splitext(path)[0] + ".mp4"


def plan_video_outputs(paths, videos, output_dir):
    """tools.inference.outputs.plan_outputs for images and videos together (the same
    mirrored layout and refusals): drawn images keep their names, videos become .mp4."""
    if not paths:
        return []
    base = common_folder(paths)
    mirrored = {os.path.join(output_dir, os.path.relpath(os.path.abspath(v.path), base))
                for v in videos}
    return plan_outputs(paths, output_dir,
                        name=lambda p: video_output(p) if p in mirrored else drawn_path(p))


def gui_available():
    """Whether this OpenCV can open a window (opencv-python-headless cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            if line.split(":", 1)[1].strip().upper() == "NONE":
                return False
            break
    try:
        cv2.namedWindow("solov2-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("solov2-probe")
    except cv2.error:  # no display (ssh without X, say)
        return False
    return True


# ----------------------------------------------------------------------------- reading
class FrameReader:
    """Decodes a cv2.VideoCapture in a thread into a bounded queue; :meth:`frames` yields
    them as RGB uint8 [H, W, 3] arrays.

    ``count``: the frames the container lists (None: read until the first failure).
    ``clock``: for a camera, a function giving seconds, read as each frame arrives
    (``stamps``); None for a file, whose frames are 1 / fps apart."""

    def __init__(self, capture, count=None, clock=None, times=None):
        self.capture, self.count, self.clock, self.times = capture, count, clock, times
        self.decoded = self.failed = 0
        self.stamps = {}   # frame index -> seconds since the first frame (cameras)
        self._queue = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    @property
    def missing(self):
        """Frames the container lists that could not be decoded (0 when it lists none)."""
        return max(self.count - self.decoded, 0) if self.count else 0

    def _put(self, value):
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        start, streak = None, 0
        try:
            while not self._stop.is_set():
                if self.count and self.decoded + self.failed >= self.count and streak:
                    break  # past the listed frames after a failure: the end of the file
                begin = time.perf_counter()
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    if not self.count or self.decoded + self.failed >= self.count:
                        break  # a camera unplugged, or the end of the file
                    self.failed += 1
                    streak += 1
                    if streak >= MAX_FAILURES:
                        break
                    continue
                streak = 0
                if self.clock is not None:
                    now = self.clock()
                    start = now if start is None else start
                    self.stamps[self.decoded] = now - start
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if self.times is not None:
                    self.times.add("decode", time.perf_counter() - begin)
                self.decoded += 1
                if not self._put(rgb):
                    break
        except BaseException as err:  # handed to the consuming thread, raised there
            self._error = err
        finally:
            self._put(None)

    def frames(self):
        while True:
            frame = self._queue.get()
            if frame is None:
                if self._error is not None:
                    raise self._error
                return
            yield frame

    def request_stop(self):
        """Read no further frame (the frames already queued still come)."""
        self._stop.set()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.capture.release()


# ----------------------------------------------------------------------------- writing
class AtomicVideoWriter:
    """cv2.VideoWriter into a temporary file beside ``path``, renamed onto ``path`` by
    :meth:`commit` once complete and checked; :meth:`abort` removes it. Opened at the first
    frame, whose size (cut to even) the video takes."""

    def __init__(self, path, fps):
        self.path, self.fps = path, float(fps)
        self.written = 0
        self.size = None
        self._writer = self._tmp = None

    def _open(self, frame):
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".mp4", dir=folder)
            os.close(fd)
        except OSError as err:
            raise OutputError(describe_os_error(err, self.path)) from None
        h, w = frame.shape[:2]
        self.size = (w - w % 2, h - h % 2)
        if min(self.size) < 2:
            raise VideoError(f"{self.path}: frames of {w} x {h} pixels are too small to "
                             "encode")
        self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*FOURCC), self.fps,
                                       self.size)
        if not self._writer.isOpened():
            self.abort()
            raise OutputError(f"cannot write {self.path}: this OpenCV build has no "
                              f"{FOURCC} (MPEG-4) encoder")

    def write(self, frame):
        """Append one BGR uint8 frame."""
        if self._writer is None:
            self._open(frame)
        w, h = self.size
        self._writer.write(np.ascontiguousarray(frame[:h, :w]))
        self.written += 1

    def commit(self):
        """Close, check and rename into place; returns the path (None if no frame came)."""
        if self._writer is None:
            return None
        self._writer.release()
        capture = cv2.VideoCapture(self._tmp)
        found = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if found != self.written:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {self.written} frames were "
                              f"encoded but the file holds {found} (disk full?)")
        try:
            with open(self._tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(self._tmp, self.path)
        except OSError as err:
            self.abort()
            raise OutputError(describe_os_error(err, self.path)) from None
        self._writer = None
        return self.path

    def abort(self):
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp and os.path.exists(self._tmp):
            os.remove(self._tmp)


class Encoder:
    """A thread writing drawn BGR frames to an AtomicVideoWriter in the order :meth:`put`
    receives them, optionally showing each in a window (``window``: its title).

    With ``stamps`` (a camera's frame index -> seconds), the recording plays in real time:
    each frame fills the slots of 1 / fps up to the next frame's time, so a model slower
    than the camera gives a video of the right length, not a fast-forward."""

    def __init__(self, writer, stamps=None, window=None, on_quit=None):
        self.writer, self.stamps, self.window, self.on_quit = writer, stamps, window, on_quit
        self._queue = queue.Queue(QUEUE_FRAMES)
        self._error = None
        self._last = None
        self._thread = threading.Thread(target=self._run, name="video-encoder", daemon=True)
        self._thread.start()

    def put(self, index, frame):
        if self._error is not None:
            raise self._error
        self._queue.put((index, frame))

    def _run(self):
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                index, frame = job
                if self.stamps is not None and self._last is not None:
                    slot = int(round(self.stamps.get(index, 0.0) * self.writer.fps))
                    while self.writer.written < slot:
                        self.writer.write(self._last)
                self.writer.write(frame)
                self._last = frame
                if self.window is not None:
                    cv2.imshow(self.window, frame)
                    key = cv2.waitKey(1) & 0xFF
                    if key in (27, ord("q")) and self.on_quit:  # Esc or q
                        self.on_quit()
        except BaseException as err:  # raised in the predicting thread at the next put
            self._error = err
            while self._queue.get() is not None:  # let the producer finish
                pass

    def close(self):
        """Wait for every frame to be written; raise what the writer raised."""
        self._queue.put(None)
        self._thread.join()
        if self.window is not None:
            cv2.destroyWindow(self.window)
        if self._error is not None:
            raise self._error


# ----------------------------------------------------------------------------- the runs
@dataclass
class VideoSummary:
    source: str        # a path, or "camera N"
    output: str        # the video written (None if nothing was)
    frames: int        # frames predicted
    written: int       # frames in the output (more than predicted for a slow camera)
    missing: int       # frames the container lists that could not be decoded
    listed: int        # the container's frame count (None: not stated)
    seconds: float
    instances: int = 0  # instances drawn, over all frames
    interrupted: bool = False
    records: list = field(default_factory=list)  # per frame: Result.to_json + "frame"

    @property
    def fps(self):
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _frame_consumer(thresh, draw, record_name):
    def consume(item, result):
        shown = result.keep(thresh)
        frame = cv2.cvtColor(shown.draw(), cv2.COLOR_RGB2BGR) if draw else None
        record = shown.to_json(record_name) if record_name is not None else None
        return frame, len(shown), record

    return consume


def _run(predictor, reader, writer, summary, thresh, record_name, progress, stamps=None,
         window=None, times=None):
    encoder = Encoder(writer, stamps, window, reader.request_stop) if writer else None

    def deliver(index, value):
        frame, count, record = value
        if encoder is not None:
            encoder.put(index, frame)
        summary.frames += 1
        summary.instances += count
        if record is not None:
            summary.records.append(dict(record, frame=index))

    start = time.perf_counter()
    try:
        predictor.predict(reader.frames(), ordered=deliver, progress=progress, times=times,
                          consumer=_frame_consumer(thresh, writer is not None, record_name))
    finally:
        reader.stop()
        summary.seconds = time.perf_counter() - start
        if encoder is not None:
            encoder.close()
    summary.missing = reader.missing


def predict_video(predictor, video, output, thresh, record_name=None, progress=None,
                  times=None):
    """Predict every frame of ``video`` (a VideoInfo) and write the drawn video to
    ``output`` (None: draw nothing); returns a VideoSummary. ``record_name``: keep each
    frame's detections at ``thresh`` (Result.to_json with this file name, plus "frame",
    its index in the output) in ``summary.records``. ``progress(n)``: called after each
    batch."""
    check_resizable(video.height, video.width, predictor.cfg.test_size, predictor.style,
                    source=video.path)
    _quiet_ffmpeg()
    capture = cv2.VideoCapture(video.path)
    if not capture.isOpened():
        raise VideoError(f"cannot read the video {video.path}")
    reader = FrameReader(capture, video.frames, times=times)
    writer = AtomicVideoWriter(output, video.fps) if output else None
    summary = VideoSummary(video.path, None, 0, 0, 0, video.frames, 0.0)
    try:
        _run(predictor, reader, writer, summary, thresh, record_name, progress, times=times)
        if writer is not None:
            summary.output = writer.commit()
            summary.written = writer.written
    except BaseException:
        if writer is not None:
            writer.abort()  # an interrupted or failed video is not left half-written
        raise
    if summary.frames == 0:
        raise VideoError(f"no frame of {video.path} could be decoded")
    return summary


def record_camera(predictor, index, output, thresh, show=False, record_name=None,
                  progress=None, clock=time.perf_counter, times=None, log=print):
    """Predict camera ``index`` until it stops sending frames, the window's q / Esc, or
    Ctrl-C (KeyboardInterrupt), and write the drawn recording to ``output`` (None: draw
    nothing) in every case; returns a VideoSummary. ``show``: a live window (only when
    this OpenCV has a GUI, see gui_available)."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise VideoError(f"cannot open camera {index} (no such device, or in use)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    reader = FrameReader(capture, clock=clock, times=times)
    writer = AtomicVideoWriter(output, fps if fps and fps > 0 else DEFAULT_FPS) \
        if output else None
    summary = VideoSummary(f"camera {index}", None, 0, 0, 0, None, 0.0)
    window = f"SOLOv2 camera {index} (q to stop)" if show and writer else None
    try:
        try:
            _run(predictor, reader, writer, summary, thresh, record_name, progress,
                 stamps=reader.stamps, window=window, times=times)
        except KeyboardInterrupt:
            summary.interrupted = True
            log("interrupted: finishing the recording")
        if writer is not None:
            summary.output = writer.commit()
            summary.written = writer.written
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return summary
