"""Which device a run uses, and what each exported engine needs to use it.

``--device`` (every entry point) and ``Predictor(device=...)`` take ``cpu``, ``gpu`` or
``gpu:N``; the default is the first GPU when Paddle was built with CUDA and sees one, else
the CPU. A GPU asked for on a machine without one is a one-line error, never a silent run on
the CPU. The dygraph model, training and evaluation then place their tensors there
(``paddle.set_device``); the exported engines are told through :func:`onnx_providers` and
the Paddle Inference config (tools/inference/backends.py).

Nothing here has run on a GPU: the repo's machines have none. The selection logic and the
provider lists are tested on the CPU; tests marked ``gpu`` run the GPU paths where there is
one (``python -m pytest -m gpu``).
"""

import re
import sys

from .errors import UserError

DEVICES = ("cpu", "gpu")


class DeviceError(UserError):
    """A device that was asked for is not there, or not understood."""


def cuda_devices():
    """How many CUDA devices Paddle can use (0 for a CPU-only build)."""
    import paddle

    if not paddle.is_compiled_with_cuda():
        return 0
    try:
        return int(paddle.device.cuda.device_count())
    except Exception:  # a CUDA build on a machine without the driver
        return 0


def parse_device(text):
    """('cpu', None) or ('gpu', index) from 'cpu', 'gpu', 'gpu:N' (or None: the default)."""
    if text is None:
        return None, None
    match = re.fullmatch(r"(cpu|gpu)(?::(\d+))?", str(text).strip().lower())
    if not match or (match[1] == "cpu" and match[2] is not None):
        raise DeviceError(f"unknown device {text!r}; use cpu, gpu or gpu:N")
    return match[1], (int(match[2]) if match[2] is not None else (0 if match[1] == "gpu"
                                                                     else None))


def select_device(requested=None, gpus=None):
    """The device string Paddle takes ('cpu' or 'gpu:N') for ``requested``."""
    kind, index = parse_device(requested)
    gpus = cuda_devices() if gpus is None else gpus
    if kind is None:
        return "gpu:0" if gpus > 0 else "cpu"
    if kind == "cpu":
        return "cpu"
    if gpus == 0:
        raise DeviceError("--device gpu was asked for, but this Paddle has no usable CUDA GPU "
                          "(a CPU-only paddlepaddle wheel, or no GPU visible); install "
                          "paddlepaddle-gpu on a machine with one, or pass --device cpu")
    if index >= gpus:
        raise DeviceError(f"--device gpu:{index} was asked for, but only {gpus} GPU(s) are "
                          f"visible (gpu:0 .. gpu:{gpus - 1})")
    return f"gpu:{index}"


def use_device(requested=None):
    """Select the device and make it Paddle's current one; returns the device string."""
    import paddle

    device = select_device(requested)
    paddle.set_device(device)
    return device


def gpu_index(device):
    """N of 'gpu:N', None for the CPU."""
    return int(device.split(":")[1]) if device.startswith("gpu") else None


def onnx_providers(device, available, tensorrt=False, log=None):
    """onnxruntime execution providers, best first, for ``device``.

    available: onnxruntime.get_available_providers(). On a GPU: TensorRT (when asked for
    and present), then CUDA, then the CPU; a provider that is asked for but absent (the
    plain ``onnxruntime`` wheel has no GPU ones: install ``onnxruntime-gpu``) falls back with
    one line through ``log``."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if gpu_index(device) is None:
        return ["CPUExecutionProvider"]
    index = gpu_index(device)
    wanted = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider"]
    chosen = []
    for name in wanted:
        if name in available:
            chosen.append((name, {"device_id": index}))
        else:
            log(f"note: onnxruntime has no {name} (pip install onnxruntime-gpu); "
                + ("trying the next provider" if name != wanted[-1] else "running on the CPU"))
    return chosen + ["CPUExecutionProvider"]


def add_device_argument(parser):
    parser.add_argument("--device", default=None,
                        help="cpu, gpu or gpu:N (default: the first GPU when this Paddle has "
                             "CUDA and sees one, else cpu)")
    return parser
