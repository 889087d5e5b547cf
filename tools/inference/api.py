"""The Python API: a SOLOv2 model you call on images.

    from tools.inference import Predictor
    predictor = Predictor(config=2)                   # or weights=PATH, engine="onnx", device="cpu"
    result = predictor("images/test/astronaut.png")   # also an RGB uint8 array, or a list
    result.masks, result.labels, result.scores, result.boxes, result.class_names
    result.draw(); result.to_coco(image_id); result.polygons()

It is what demo.py runs: the same config resolution (a weight file that describes itself
brings its config), the same weight fetching (the config's published file, cached under
$SOLOV2_HOME), the same backends, and the same threaded loop
(tools.inference.predictor.predict_stream), so a Predictor gives demo.py's detections. The
config's default paths resolve against the repository, not the working directory.
"""

import os

import numpy as np

from ..data.coco import load_class_names
from ..data.preprocess import ImageReadError
from ..device import select_device
from ..files import repo_path
from ..weights.describe import load_described_config
from .backends import load_backend
from .instances import Result
from .predictor import StageTimes, predict_stream


class Predictor:
    """A SOLOv2 model ready to predict.

    Args:
        config: config number (default 2, or the number a described ``weights`` file records).
        weights: a weight file (default: the config's, fetched and converted on first use).
        engine: 'dygraph', 'paddle-inference' or 'onnx' (an exported folder, ``model_dir``).
        device: 'cpu', 'gpu' or 'gpu:N' (default: the first GPU if Paddle sees one).
        overrides: ``key=value`` words, as on the command line (e.g. "test_cfg.score_thr=0.3").
        download: fetch the config's published weights when absent (SOLOV2_OFFLINE=1 also
            turns this off).
        batch_size: images per forward pass for a list (default test_cfg.batch_size).
        threads: CPU threads of an exported engine (default every core).
    """

    def __init__(self, config=None, weights=None, engine="dygraph", device=None,
                 model_dir=None, overrides=(), download=True, batch_size=None, threads=None,
                 num_workers=2, log=print):
        self.cfg, self.info = load_described_config(config, list(overrides), weights)
        cfg = self.cfg
        if self.info is None and cfg.classes_path:
            cfg.classes_path = repo_path(cfg.classes_path)
        self.class_names = (self.info or {}).get("class_names") or load_class_names(cfg)
        self.device = select_device(device)
        self.engine = engine
        self.backend, self.style = load_backend(engine, cfg, cfg.test_cfg.model_path, model_dir,
                                                threads=threads, device=self.device,
                                                download=download, log=log)
        self.batch_size = batch_size or cfg.test_cfg.batch_size
        self.num_workers = num_workers
        self.times = StageTimes()

    def __call__(self, inputs, batch_size=None):
        """Predict one image (a path, or an RGB uint8 [H, W, 3] array) -> Result, or a list
        of them -> list of Results, batched. An unreadable image raises ImageReadError."""
        single = isinstance(inputs, (str, os.PathLike, np.ndarray))
        sources = [inputs] if single else list(inputs)
        sources = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in sources]
        results = self.predict(sources, batch_size)
        return results[0] if single else results

    def predict(self, sources, batch_size=None, consumer=None, on_error=None, progress=None,
                keep_image=True):
        """The loop under __call__, for scripts: ``consumer(item, result)`` runs in a worker
        thread per image (result a Result); returns its values in input order. Unreadable
        inputs go to ``on_error(item)`` (default: raise ImageReadError)."""
        cfg = self.cfg

        def wrap(item, prediction):
            result = Result(prediction, self.class_names, item.image, item.path)
            return consumer(item, result) if consumer else result

        def refuse(item):
            raise ImageReadError(item.error)

        return predict_stream(self.backend, sources, cfg.test_size, cfg.pixel_mean,
                              cfg.pixel_std, self.style, batch_size=batch_size or self.batch_size,
                              num_workers=self.num_workers, keep_image=keep_image,
                              consumer=wrap, times=self.times, on_error=on_error or refuse,
                              progress=progress)

    @property
    def description(self):
        return getattr(self.backend, "description", self.engine)
