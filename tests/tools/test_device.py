"""Device selection and the exported engines' GPU settings (tools/device.py), on the CPU; the
``gpu`` tests run them for real where there is a GPU (python -m pytest -m gpu)."""

import pytest

from tools.device import DeviceError, onnx_providers, parse_device, select_device, use_device


@pytest.mark.parametrize("text, expected", [
    ("cpu", ("cpu", None)), ("gpu", ("gpu", 0)), ("GPU:3", ("gpu", 3)), (None, (None, None)),
])
def test_device_names(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["cuda", "gpu:x", "cpu:1", "tpu", ""])
def test_unknown_device_is_one_line(text):
    with pytest.raises(DeviceError, match="use cpu, gpu or gpu:N"):
        parse_device(text)


def test_default_is_the_first_gpu_when_there_is_one():
    assert select_device(None, gpus=0) == "cpu"
    assert select_device(None, gpus=2) == "gpu:0"
    assert select_device("cpu", gpus=2) == "cpu"
    assert select_device("gpu:1", gpus=2) == "gpu:1"


def test_absent_gpu_is_an_error_not_a_silent_cpu_run():
    with pytest.raises(DeviceError, match="no usable CUDA GPU.*--device cpu"):
        select_device("gpu", gpus=0)
    with pytest.raises(DeviceError, match=r"gpu:2 .* only 2 GPU\(s\)"):
        select_device("gpu:2", gpus=2)


def test_this_machine_selects_what_paddle_offers():
    import paddle

    expected = "gpu:0" if paddle.is_compiled_with_cuda() and \
        paddle.device.cuda.device_count() > 0 else "cpu"
    assert select_device() == expected
    assert use_device("cpu") == "cpu" and paddle.get_device() == "cpu"


def test_onnx_provider_lists():
    cpu_only = ["CPUExecutionProvider"]
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    notes = []
    assert onnx_providers("cpu", gpu_build) == ["CPUExecutionProvider"]
    assert onnx_providers("gpu:1", gpu_build, log=notes.append) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers("gpu:0", gpu_build, tensorrt=True, log=notes.append) == [
        ("TensorrtExecutionProvider", {"device_id": 0}),
        ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert notes == []
    # The plain onnxruntime wheel: each missing provider is one line, then the CPU.
    assert onnx_providers("gpu:0", cpu_only, tensorrt=True, log=notes.append) == [
        "CPUExecutionProvider"]
    assert len(notes) == 2 and "onnxruntime-gpu" in notes[0] and "on the CPU" in notes[1]


@pytest.mark.gpu
def test_gpu_is_used_when_asked_for():
    import paddle

    assert use_device("gpu") == "gpu:0"
    x = paddle.ones([2, 2])
    assert "gpu" in str(x.place).lower()
