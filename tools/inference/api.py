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

An exported engine ('onnx', 'paddle-inference') given no ``model_dir`` is exported on
first use into $SOLOV2_HOME/exports/ and reused afterwards. Exporting is tools/deploy's
work, a layer above this one, so this module cannot import it: the Predictor calls the
function in ``tools.inference.exporter``, which tools/__init__.py (above every layer) sets
to tools.deploy.cache.exported_model_dir, or the ``exporter`` it is given.
"""

import os

import numpy as np

from config import SOLOv2Config

from ..data.coco import load_class_names
from ..data.preprocess import ImageReadError
from ..device import select_device
from ..files import repo_path
from ..weights.describe import load_described_config
from .backends import BACKENDS, BackendError, load_backend
from .instances import Result
from .predictor import StageTimes, predict_stream


class Predictor:
    """A SOLOv2 model ready to predict.

    Args:
        config: config number (default 2, or the number a described ``weights`` file
            records); or a config already resolved by tools.weights.describe.
            load_described_config, with its ``described`` info (what demo.py passes).
        weights: a weight file (default: the config's, fetched and converted on first use).
        engine: 'dygraph', 'paddle-inference' or 'onnx'.
        device: 'cpu', 'gpu' or 'gpu:N' (default: the first GPU if Paddle sees one).
        model_dir: the exported folder an exported engine runs (default: the config and
            weights exported on first use into $SOLOV2_HOME/exports/).
        overrides: ``key=value`` words, as on the command line (e.g. "test_cfg.score_thr=0.3").
        download: fetch the config's published weights when absent (SOLOV2_OFFLINE=1 also
            turns this off).
        batch_size: images per forward pass for a list (default test_cfg.batch_size).
        threads: CPU threads of an exported engine (default every core).
        tensorrt: 'fp32' or 'fp16' to run an exported engine through TensorRT (GPU only).
        exporter: ``exporter(cfg, model_path, engine, download=, log=) -> folder`` for an
            exported engine without ``model_dir`` (default ``tools.inference.exporter``).
    """

    def __init__(self, config=None, weights=None, engine="dygraph", device=None,
                 model_dir=None, overrides=(), download=True, batch_size=None, threads=None,
                 num_workers=2, tensorrt=None, described=None, exporter=None, log=print):
        if isinstance(config, SOLOv2Config):
            if weights is not None or overrides:
                raise ValueError("a resolved config already holds its weights and overrides")
            self.cfg, self.info = config, described
        else:
            self.cfg, self.info = load_described_config(config, list(overrides), weights)
        cfg = self.cfg
        if self.info is None and cfg.classes_path:
            cfg.classes_path = repo_path(cfg.classes_path)
        self.class_names = (self.info or {}).get("class_names") or load_class_names(cfg)
        self.device = select_device(device)
        self.engine = engine
        if engine not in BACKENDS:
            raise BackendError(f"unknown engine {engine!r}; choose one of {', '.join(BACKENDS)}")
        if engine != "dygraph" and model_dir is None:
            model_dir = self._export(exporter, download, log)
        self.model_dir = model_dir
        self.backend, self.style = load_backend(engine, cfg, cfg.test_cfg.model_path, model_dir,
                                                threads=threads, device=self.device,
                                                tensorrt=tensorrt, download=download, log=log)
        self.batch_size = batch_size or cfg.test_cfg.batch_size
        self.num_workers = num_workers
        self.times = StageTimes()

    def _export(self, exporter, download, log):
        from . import exporter as wired

        exporter = exporter or wired
        if exporter is None:
            raise BackendError(f"engine {self.engine!r} needs model_dir, a folder "
                               "tools/export_model.py wrote")
        return exporter(self.cfg, self.cfg.test_cfg.model_path, self.engine,
                        download=download, log=log)

    def __call__(self, inputs, batch_size=None):
        """Predict one image (a path, or an RGB uint8 [H, W, 3] array) -> Result, or a list
        of them -> list of Results, batched. An unreadable image raises ImageReadError."""
        single = isinstance(inputs, (str, os.PathLike, np.ndarray))
        sources = [inputs] if single else list(inputs)
        sources = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in sources]
        results = self.predict(sources, batch_size)
        return results[0] if single else results

    def predict(self, sources, batch_size=None, consumer=None, on_error=None, progress=None,
                keep_image=True, ordered=None, times=None):
        """The loop under __call__, for scripts. ``sources``: paths or RGB arrays, a list or
        any iterable (read lazily: a video's frames). ``consumer(item, result)`` runs in a
        worker thread per image (result a Result); returns its values in input order, or
        passes them to ``ordered(index, value)`` in input order (then returns None; see
        predict_stream). Unreadable inputs go to ``on_error(item)`` (default: raise
        ImageReadError). Stage times add up in ``times`` (default ``self.times``)."""
        cfg = self.cfg

        def wrap(item, prediction):
            result = Result(prediction, self.class_names, item.image, item.path)
            return consumer(item, result) if consumer else result

        def refuse(item):
            raise ImageReadError(item.error)

        return predict_stream(self.backend, sources, cfg.test_size, cfg.pixel_mean,
                              cfg.pixel_std, self.style, batch_size=batch_size or self.batch_size,
                              num_workers=self.num_workers, keep_image=keep_image,
                              consumer=wrap, times=self.times if times is None else times,
                              on_error=on_error or refuse, progress=progress, ordered=ordered)

    @property
    def description(self):
        return getattr(self.backend, "description", self.engine)
