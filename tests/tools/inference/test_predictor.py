import threading

import cv2
import numpy as np
import pytest

from config import load_config
from tools.inference.backends import load_dygraph
from tools.inference.predictor import StageTimes, predict_stream
from tools.weights import standin as fx
from tools.weights.convert import convert_file


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    cfg = load_config(2, ["test_size=(128, 192)"])
    source = str(folder / "static.pdparams")
    fx.save_fluid_pickle(source, fx.make_state(fx.ppdet_static_keys(**fx.STATIC_LIGHT_512)))
    convert_file(cfg, source, str(folder / "converted.pdparams"))
    return (cfg,) + load_dygraph(cfg, str(folder / "converted.pdparams"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six files: two 128x192 images (same padded shape), two 150x150, one 100x300, and an
    unreadable one in the middle."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    paths = []
    for i, (h, w) in enumerate([(128, 192), (150, 150), (128, 192), (100, 300), (150, 150)]):
        image = cv2.GaussianBlur(rng.randint(0, 256, (h, w, 3)).astype(np.uint8), (9, 9), 3)
        path = str(folder / f"img{i}.png")
        cv2.imwrite(path, image)
        paths.append(path)
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths.insert(3, str(broken))
    return paths


def run(predictor, paths, batch_size, **kwargs):
    cfg, engine, style = predictor
    return predict_stream(engine, paths, cfg.test_size, cfg.pixel_mean, cfg.pixel_std, style,
                          batch_size=batch_size, **kwargs)


def test_batches_give_the_same_results_as_single_images(predictor, images):
    errors = []
    singles = run(predictor, images, 1, on_error=errors.append)
    batched = run(predictor, images, 3, on_error=lambda item: None)
    assert [e.path for e in errors] == [images[3]]
    assert singles[3] is None and batched[3] is None
    assert sum(len(r["scores"]) for r in singles if r) > 0  # the fixture weights detect
    for single, batch in zip(singles, batched):
        if single is None:
            continue
        np.testing.assert_array_equal(single["labels"], batch["labels"])
        np.testing.assert_allclose(single["scores"], batch["scores"], rtol=1e-4, atol=1e-6)
        differing = (single["masks"] != batch["masks"]).sum()
        assert differing <= 1e-4 * max(single["masks"].size, 1)


def test_results_come_back_in_input_order_at_the_original_size(predictor, images):
    results = run(predictor, images, 2, on_error=lambda item: None)
    for path, result in zip(images, results):
        if result is None:
            continue
        h, w = cv2.imread(path).shape[:2]
        assert result["masks"].shape[1:] == (h, w)


def test_consumers_run_in_worker_threads_and_stages_are_timed(predictor, images):
    threads = set()
    times = StageTimes()

    def consumer(item, result):
        threads.add(threading.current_thread().name)
        return item.path

    out = run(predictor, images[:3], 1, consumer=consumer, times=times)
    assert out == images[:3]
    assert threading.current_thread().name not in threads
    assert [stage for stage, _ in times.rows()] == ["read", "preprocess", "forward",
                                                    "postprocess", "consume"]
    assert all(ms > 0 for _, ms in times.rows())


class CountingPredictor:
    """Stand-in backend: one empty result per image, counting the images it was given."""

    def __init__(self):
        self.images = 0

    def __call__(self, batch, crop_hws, ori_hws, times):
        self.images += len(batch)
        return [{"masks": np.zeros((0, h, w), bool)} for h, w in ori_hws]


def small_images(folder, count):
    paths = []
    for i in range(count):
        path = str(folder / f"img{i:02d}.png")
        cv2.imwrite(path, np.full((32, 48, 3), 5 * i, np.uint8))
        paths.append(path)
    return paths


def run_stand_in(predictor, paths, **kwargs):
    return predict_stream(predictor, paths, (32, 48), (0, 0, 0), (1, 1, 1), "mmcv", **kwargs)


def test_a_failing_consumer_stops_the_run_early(tmp_path):
    """A disk that fills up at the first image must not cost predicting the other 40."""
    predictor = CountingPredictor()

    def consumer(item, result):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_stand_in(predictor, small_images(tmp_path, 40), consumer=consumer, num_workers=1)
    assert predictor.images < 40


def test_results_waiting_for_slow_consumers_are_bounded(tmp_path):
    """Each result of a large photo holds gigabytes of masks: the loop waits for the
    consumers instead of piling results up faster than they are drawn."""
    import time

    predictor = CountingPredictor()
    lock = threading.Lock()
    consumed = []
    waiting = []

    def consumer(item, result):
        time.sleep(0.02)
        with lock:
            consumed.append(item.index)
        return item.index

    def counting(batch, crop_hws, ori_hws, times):
        with lock:
            waiting.append(predictor.images - len(consumed))
        return predictor(batch, crop_hws, ori_hws, times)

    out = run_stand_in(counting, small_images(tmp_path, 24), consumer=consumer,
                       num_workers=2, batch_size=1)
    assert out == list(range(24))
    # Never more than num_workers + batch_size results made and not yet consumed.
    assert max(waiting) <= 3, waiting


def test_an_iterable_is_read_lazily_and_ordered_gets_input_order(tmp_path):
    """A video is a generator of unknown length: the loop takes frames a few batches ahead
    of the network only, and ``ordered`` sees every value in input order although batches
    of another padded shape finish first; an unreadable frame leaves a gap."""
    predictor = CountingPredictor()
    taken = []
    ahead = []

    def frames():
        for k in range(40):
            taken.append(k)
            h = 32 if k % 3 else 96  # every third frame pads to another shape
            if k == 7:
                yield np.zeros((h, 48), np.uint8)  # not RGB: skipped
            else:
                yield np.full((h, 48, 3), k, np.uint8)

    def counting(batch, crop_hws, ori_hws, times):
        ahead.append(len(taken) - predictor.images)
        return predictor(batch, crop_hws, ori_hws, times)

    seen, skipped = [], []
    out = predict_stream(counting, frames(), (32, 48), (0, 0, 0), (1, 1, 1), "mmcv",
                         batch_size=2, num_workers=2, consumer=lambda item, r: item.index,
                         ordered=lambda index, value: seen.append((index, value)),
                         on_error=lambda item: skipped.append(item.index))
    assert out is None and skipped == [7]
    assert seen == [(k, k) for k in range(40) if k != 7]
    # Never more than the read-ahead (2 batches or 2 x workers) plus the batches waiting for
    # a full bucket (4 x batch size) beyond what the network has been given.
    assert max(ahead) <= 4 + 4 * 2 + 2, ahead
