"""The backends that run SOLOv2, and the one factory every script picks one with.

Every backend is a predictor with one interface,
``predictor(batch, crop_hws, ori_hws, times) -> list of result dicts``, so the shared loop
(tools.inference.predictor.predict_stream) runs any of them. ``--engine`` names one:

  'dygraph'           the model code and a weight file (:func:`load_dygraph`)
  'paddle-inference'  an exported folder through paddle.inference (no model code needed)
  'onnx'              the exported model.onnx through onnxruntime

An exported folder is what tools/deploy/export.py writes; the part of its deploy.json that
the backends rely on (DEPLOY_FORMAT, DEPLOY_KEYS, POSTPROCESS_FIELDS) is defined below.

An exported graph takes one image at a time (each image's masks come at its own original
size), so a batch is run image by image; every image sees the batch's padded input, as in
the dygraph model, so all engines give the same masks. By default an exported backend runs
only the network graph in its engine and the same numpy post-processing as the dygraph
backend (MODES below): the graph with post-processing inside stays the deployable file.
"""

import json
import os
import time

import numpy as np
import paddle

from ..data.preprocess import preprocess_style
from ..device import gpu_index, onnx_providers
from ..errors import UserError
from ..runtime import cpu_cores, use_all_cpu_cores

BACKENDS = ("dygraph", "paddle-inference", "onnx")


class BackendError(UserError):
    """An exported folder or a backend's library is missing or unusable; says what to do."""


# --------------------------------------------------------------------- dynamic graph
class DygraphPredictor:
    """The dynamic-graph network plus post-processing, behind the interface every backend
    offers: ``predictor(batch, crop_hws, ori_hws, times) -> list of result dicts``, with
    ``batch`` the padded [N, 3, H, W] float32 numpy input."""

    def __init__(self, model, postprocess):
        self.model = model
        self.postprocess = postprocess
        model.eval()

    def network(self, batch):
        """The network alone: dict of cate_scores, kernels and mask_feat as numpy arrays."""
        with paddle.no_grad():
            outputs = self.model(paddle.to_tensor(batch))
        return {key: value.numpy() for key, value in outputs.items()}

    def __call__(self, batch, crop_hws, ori_hws, times):
        # The model's outputs go to the post-processing as they are (tensors, or whatever a
        # stand-in model returns), not through network()'s numpy copy.
        start = time.perf_counter()
        with paddle.no_grad():
            outputs = self.model(paddle.to_tensor(batch))
            forward_done = time.perf_counter()
            results = self.postprocess(outputs, crop_hws, ori_hws)
        times.add("forward", forward_done - start, len(batch))
        times.add("postprocess", time.perf_counter() - forward_done, len(batch))
        return results


def load_dygraph(cfg, model_path, device="cpu"):
    """(DygraphPredictor, preprocessing style) for a weight file, on ``device`` (a
    tools.device.select_device string).

    Raises tools.weights.load.MissingWeightsError (with download/convert instructions) when
    the file does not exist, WeightFileError / ConversionError when it does not fit the
    config.
    """
    from model import build_model, build_postprocess

    from ..weights.load import load_weights

    paddle.set_device(device)
    if device == "cpu":
        use_all_cpu_cores()
    model = build_model(cfg)
    meta = load_weights(model, model_path, cfg)
    return DygraphPredictor(model, build_postprocess(cfg)), preprocess_style(cfg, meta)


# --------------------------------------------------------------------- exported folders
# Version of deploy.json's layout; backends refuse a folder they do not understand.
DEPLOY_FORMAT = 1
# What deploy.json must hold besides "format" (tools/deploy/export.py writes more: weights,
# sizes, normalisation, the Paddle version, ONNX conversion results).
DEPLOY_KEYS = ("config", "parts", "preprocess", "postprocess")
# The test_cfg fields the exported graph bakes in; a run with other values must export again.
POSTPROCESS_FIELDS = ("score_thr", "mask_thr", "nms_pre", "nms_kernel", "nms_sigma",
                      "update_thr", "max_per_img")


def postprocess_settings(cfg):
    return {name: getattr(cfg.test_cfg, name) for name in POSTPROCESS_FIELDS}


def default_model_dir(cfg):
    """Where a config's export goes unless told otherwise: inference_model/<config name>."""
    return os.path.join("inference_model", cfg.name)


def read_deploy_info(model_dir):
    path = os.path.join(model_dir, "deploy.json")
    if not os.path.exists(path):
        raise BackendError(f"{path} not found: export the model first, e.g. "
                           "python tools/export_model.py --config=N --output "
                           f"{model_dir}")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BackendError(f"{path} is not readable json ({err}); export the model "
                           "again") from None
    if not isinstance(info, dict) or info.get("format") != DEPLOY_FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise BackendError(f"{path} has format {found}, this code reads {DEPLOY_FORMAT}; "
                           "export the model again")
    missing = [key for key in DEPLOY_KEYS if key not in info]
    if missing:
        raise BackendError(f"{path} lacks {missing}; export the model again")
    return info


TENSORRT = (None, "fp32", "fp16")


def _paddle_trt_precision(inference, tensorrt, log):
    """Paddle Inference's precision enum for ``tensorrt`` ('fp32' / 'fp16'), or None when not
    asked for or when this Paddle was built without TensorRT (said in one line)."""
    if tensorrt is None:
        return None
    if tuple(inference.get_trt_compile_version()) == (0, 0, 0):
        (log or print)("note: this Paddle is built without TensorRT; running Paddle "
                       "Inference on the GPU without it")
        return None
    return {"fp32": inference.PrecisionType.Float32,
            "fp16": inference.PrecisionType.Half}[tensorrt]


class PaddleInferenceRunner:
    """One saved graph (``prefix``.json + .pdiparams) in a paddle.inference predictor.

    onednn: True, False or 'auto': use oneDNN unless building the predictor or its first
    run fails with it, then rebuild without it. With Paddle 3.3.1 both fail for SOLOv2:
    building rejects the [N, S, S, C] -> [N, S*S, C] reshape of the category scores ("type
    tensor<1x1600x80xf32> ... must be equal to type tensor<1x40x40x80xf32>") and no resize
    op runs under oneDNN (Paddle issue #79749).
    """

    ONEDNN_ERRORS = (NotImplementedError, ValueError, RuntimeError)

    def __init__(self, prefix, threads=None, onednn="auto", device="cpu", tensorrt=None,
                 trt_shapes=None, log=None):
        from paddle import inference

        self._inference = inference
        self.prefix, self.threads = prefix, threads or cpu_cores()
        self.device, self.tensorrt = device, None
        if gpu_index(device) is not None:
            onednn = False  # a CPU library
            self.tensorrt = _paddle_trt_precision(inference, tensorrt, log)
        self.trt_shapes = trt_shapes
        if not os.path.exists(prefix + ".json"):
            raise BackendError(f"{prefix}.json not found; export the model again")
        self.auto = onednn == "auto"
        self.onednn = bool(onednn)
        self.fallback_reason = None
        try:
            self.predictor = self._create(self.onednn)
        except self.ONEDNN_ERRORS as err:
            if not (self.auto and self.onednn):
                raise
            self._fall_back(err)

    def _create(self, onednn):
        config = self._inference.Config(self.prefix + ".json", self.prefix + ".pdiparams")
        index = gpu_index(self.device)
        if index is None:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(self.threads)
            # Paddle 3 enables oneDNN by default on CPU; be explicit either way.
            config.enable_onednn() if onednn else config.disable_onednn()
        else:
            config.enable_use_gpu(256, index)  # initial memory pool in MB
            if self.tensorrt is not None:
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
                    precision_mode=self.tensorrt, use_static=False, use_calib_mode=False)
                if self.trt_shapes:  # input sizes vary from image to image
                    config.set_trt_dynamic_shape_info(*self.trt_shapes)
        config.disable_glog_info()
        return self._inference.create_predictor(config)

    def __call__(self, feeds):
        try:
            return self._run(feeds)
        except self.ONEDNN_ERRORS as err:
            if not (self.auto and self.onednn):
                raise
            self._fall_back(err)
            return self._run(feeds)

    def _fall_back(self, err):
        self.fallback_reason = str(err).strip().splitlines()[0][:160]
        self.onednn = False
        self.predictor = self._create(False)

    def _run(self, feeds):
        for name in self.predictor.get_input_names():
            handle = self.predictor.get_input_handle(name)
            handle.reshape(feeds[name].shape)
            handle.copy_from_cpu(np.ascontiguousarray(feeds[name]))
        self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu()
                for name in self.predictor.get_output_names()]


class OnnxRunner:
    """One ONNX file in an onnxruntime session with ``threads`` intra-op threads (default
    every core), on the CPU or, with onnxruntime-gpu, through its CUDA (and TensorRT)
    execution providers (tools/device.py onnx_providers)."""

    def __init__(self, path, threads=None, device="cpu", tensorrt=None, log=None):
        try:
            import onnxruntime
        except ImportError:
            raise BackendError("onnxruntime is not installed: pip install -r "
                               "requirements-deploy.txt") from None
        if not os.path.exists(path):
            raise BackendError(f"{path} not found; export with ONNX (tools/export_model.py "
                               "without --no-onnx; see deploy.json for why it may be missing)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.inter_op_num_threads = 1
        # Errors only: graph optimisation otherwise prints a warning per node it leaves.
        options.log_severity_level = 3
        providers = onnx_providers(device, onnxruntime.get_available_providers(),
                                   tensorrt=tensorrt is not None, log=log)
        if tensorrt == "fp16":
            providers = [(name, dict(opts, trt_fp16_enable=True))
                         if name == "TensorrtExecutionProvider" else (name, opts)
                         for name, opts in (p if isinstance(p, tuple) else (p, {})
                                            for p in providers)]
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        self.providers = self.session.get_providers()
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds):
        return self.session.run(None, {name: feeds[name] for name in self.inputs})


def shape_feeds(crop_hw, ori_hw):
    """The ``im_shape`` and ``scale_factor`` inputs of an exported graph for one image."""
    return {"im_shape": np.array([crop_hw], np.float32),
            # resized / original; the graph rounds im_shape / scale_factor back to ori_hw
            "scale_factor": np.array([[crop_hw[0] / ori_hw[0], crop_hw[1] / ori_hw[1]]],
                                     np.float32)}


# How an ExportedPredictor runs an exported folder:
#   'network'  the network graph in the engine, then the numpy post-processing the dygraph
#              engine runs (model/postprocess.py): same detections, and the thresholds
#              come from the config, not the export (the default where the folder has it);
#   'graph'    the one graph with post-processing inside, as a user without this repo runs
#              it (export folders made before the network graph was always written);
#   'split'    the network graph, then the post-processing graph (times the graph's
#              post-processing apart from the network, for tools/benchmark.py).
MODES = ("network", "graph", "split")
_MODE_PARTS = {"network": ("network",), "graph": ("model",), "split": ("network", "postprocess")}


class ExportedPredictor:
    """An exported SOLOv2 run by ``engine`` (a backend name): 'paddle-inference' or 'onnx',
    in one of MODES (see above). 'network' needs ``cfg`` for the post-processing."""

    def __init__(self, model_dir, engine, threads=None, mode="network", onednn="auto",
                 cfg=None, device="cpu", tensorrt=None, log=None):
        self.info = read_deploy_info(model_dir)
        if mode not in MODES:
            raise BackendError(f"unknown mode {mode!r}; choose one of {MODES}")
        self.engine, self.mode = engine, mode
        missing = [p for p in _MODE_PARTS[mode] if p not in self.info["parts"]]
        if missing:
            raise BackendError(f"{model_dir} has no {missing} graph; export again with "
                               "tools/export_model.py" + (" --split" if mode == "split" else ""))
        self.postprocess = None
        if mode == "network":
            if cfg is None:
                raise ValueError("mode 'network' runs the config's post-processing: pass cfg")
            from model.postprocess import build_postprocess

            self.postprocess = build_postprocess(cfg)
        if tensorrt not in TENSORRT:
            raise BackendError(f"unknown TensorRT precision {tensorrt!r}; use fp32 or fp16")
        if tensorrt is not None and gpu_index(device) is None:
            raise BackendError("TensorRT runs on a GPU: pass --device gpu with --tensorrt")
        self.device = device
        self.runners = {}
        for part in _MODE_PARTS[mode]:
            prefix = os.path.join(model_dir, part)
            if engine == "onnx":
                self.runners[part] = OnnxRunner(prefix + ".onnx", threads, device, tensorrt,
                                                log)
            elif engine == "paddle-inference":
                shapes = _trt_shapes(self.info, part) if tensorrt else None
                self.runners[part] = PaddleInferenceRunner(prefix, threads, onednn, device,
                                                           tensorrt, shapes, log)
            else:
                raise BackendError(f"unknown engine {engine!r}; choose one of {BACKENDS}")

    @property
    def description(self):
        notes = [] if self.device == "cpu" else [self.device]
        for part, runner in self.runners.items():
            if isinstance(runner, PaddleInferenceRunner) and self.device == "cpu":
                notes.append(f"{part}: oneDNN {'on' if runner.onednn else 'off'}"
                             + (f" ({runner.fallback_reason})" if runner.fallback_reason else ""))
            elif isinstance(runner, PaddleInferenceRunner) and runner.tensorrt is not None:
                notes.append(f"{part}: TensorRT {runner.tensorrt}")
            elif isinstance(runner, OnnxRunner) and self.device != "cpu":
                notes.append(f"{part}: {', '.join(runner.providers)}")
        if self.mode == "network":
            notes.append("network graph + numpy post-processing")
        return f"{self.engine}" + (f" [{'; '.join(notes)}]" if notes else "")

    def network(self, image):
        """The network graph alone on one padded [1, 3, H, W] image: dict of cate_scores,
        kernels and mask_feat (numpy)."""
        if "network" not in self.runners:
            raise BackendError(f"mode {self.mode!r} runs no network graph of its own")
        return dict(zip(("cate_scores", "kernels", "mask_feat"),
                        self.runners["network"]({"image": image})))

    def __call__(self, batch, crop_hws, ori_hws, times):
        results = []
        for i, (crop_hw, ori_hw) in enumerate(zip(crop_hws, ori_hws)):
            image = batch[i:i + 1]
            start = time.perf_counter()
            if self.mode == "network":
                outputs = self.network(image)
                forward_done = time.perf_counter()
                result = self.postprocess(outputs, [crop_hw], [ori_hw])[0]
                times.add("forward", forward_done - start)
                times.add("postprocess", time.perf_counter() - forward_done)
                results.append(result)
                continue
            feeds = dict(shape_feeds(crop_hw, ori_hw), image=image)
            if self.mode == "split":
                cate_scores, kernels, mask_feat = self.runners["network"](feeds)
                forward_done = time.perf_counter()
                outputs = self.runners["postprocess"](dict(
                    feeds, cate_scores=cate_scores, kernels=kernels, mask_feat=mask_feat))
                times.add("forward", forward_done - start)
                times.add("postprocess", time.perf_counter() - forward_done)
            else:
                outputs = self.runners["model"](feeds)
                times.add("model", time.perf_counter() - start)
            masks, labels, scores, boxes = outputs
            results.append({"masks": masks.astype(bool), "labels": labels.astype(np.int64),
                            "scores": scores.astype(np.float32),
                            "boxes": boxes.astype(np.float32)})
        return results


def _trt_shapes(info, part):
    """(min, max, opt) input shapes for TensorRT's dynamic-shape engine: padded images from
    32 x 32 up to the padded test size in either orientation."""
    short, long_side = info.get("test_size", (800, 1333))
    top = -(-int(long_side) // 32) * 32
    opt = [1, 3, -(-int(short) // 32) * 32, top]
    return ({"image": [1, 3, 32, 32]}, {"image": [1, 3, top, top]}, {"image": opt})


def add_engine_arguments(parser):
    """``--engine`` and ``--model-dir``, as demo.py, eval.py and test_dev.py take them."""
    parser.add_argument("--engine", choices=BACKENDS, default="dygraph",
                        help="dygraph: model code + weights file; paddle-inference / onnx: "
                             "the folder tools/export_model.py wrote (default dygraph)")
    parser.add_argument("--model-dir", help="exported folder for --engine paddle-inference / "
                                            "onnx (default inference_model/<config name>)")
    parser.add_argument("--tensorrt", choices=("fp32", "fp16"), default=None,
                        help="on a GPU, run the exported engine through TensorRT at this "
                             "precision (Paddle Inference built with TensorRT, or "
                             "onnxruntime-gpu); never tried on this repo's machines")
    return parser


def load_backend(engine, cfg, model_path=None, model_dir=None, threads=None, mode=None,
                 device="cpu", tensorrt=None, download=True, log=print):
    """(predictor, preprocessing style) for backend ``engine``; the one call demo.py,
    eval.py, test_dev.py and tools/benchmark.py make.

    dygraph reads ``model_path`` (default cfg.test_cfg.model_path); the exported backends
    read ``model_dir`` (default inference_model/<config name>) and take the preprocessing
    style recorded there at export. ``mode`` (exported backends; see MODES) defaults to
    'network' where the folder has the network graph, else 'graph'. ``device`` is a
    tools.device.select_device string; ``tensorrt`` ('fp32' / 'fp16', GPU only) asks the
    exported engines for TensorRT. The config's own default weights, when absent, are
    fetched into the cache unless ``download`` is False (tools/weights/fetch.py). Raises
    BackendError, or the weight loader's errors.
    """
    if engine == "dygraph":
        if tensorrt is not None:
            raise BackendError("--tensorrt is for the exported engines (paddle-inference, "
                               "onnx), not dygraph")
        from ..files import repo_path
        from ..weights.fetch import resolve_model_path

        path = resolve_model_path(cfg, repo_path(model_path or cfg.test_cfg.model_path),
                                  allow_download=download, log=log)
        return load_dygraph(cfg, path, device)
    if engine not in BACKENDS:
        raise BackendError(f"unknown engine {engine!r}; choose one of {', '.join(BACKENDS)}")
    model_dir = model_dir or default_model_dir(cfg)
    info = read_deploy_info(model_dir)
    if info["config"] != cfg.name:
        raise BackendError(f"{model_dir} holds {info['config']}, not {cfg.name}; pass the "
                           "matching --config")
    if mode is None:
        mode = "network" if "network" in info["parts"] else "graph"
    if mode != "network":
        # The post-processing thresholds are part of the exported graph: a different value
        # on the command line would be silently ignored, so it is an error instead.
        wanted, exported = postprocess_settings(cfg), info.get("postprocess", {})
        differ = [f"test_cfg.{k}={wanted[k]!r} (exported with {exported.get(k)!r})"
                  for k in wanted if exported.get(k) != wanted[k]]
        if differ:
            raise BackendError(f"{model_dir} was exported with other post-processing "
                               f"settings: {', '.join(differ)}; export again with the same "
                               "key=value overrides")
    return (ExportedPredictor(model_dir, engine, threads, mode, cfg=cfg, device=device,
                              tensorrt=tensorrt), info["preprocess"])
