import os
import pickle

import numpy as np
import pytest

from tools.weights.files import (
    META_KEY,
    WeightFileError,
    load_pdparams,
    load_tensor_folder,
    load_torch,
    read_paddle_tensor,
    safe_unpickle,
    save_pdparams,
)
from tools.weights.standin import save_fluid_pickle


class Payload:
    """Unpickling this runs os.system -- what a malicious weight file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_booby_trapped_pdparams_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"conv1_weights": np.zeros(3, np.float32), "x": Payload(marker)}, f)
    with pytest.raises(WeightFileError, match="posix.system|os.system"):
        load_pdparams(str(path))
    assert not marker.exists()
    # The plain unpickler really would have run it: the test payload is live.
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_booby_trapped_pth_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": Payload(marker)}, str(path))
    with pytest.raises(WeightFileError, match="weights_only"):
        load_torch(str(path))
    assert not marker.exists()


def test_python2_pickle_with_numpy1_names_loads(tmp_path):
    arrays = {"res2a_branch2a_weights": np.arange(12, dtype=np.float32).reshape(3, 4),
              "bn2a_branch2a_mean": np.linspace(-1, 1, 300).astype(np.float32)}
    path = tmp_path / "py2.pdparams"
    save_fluid_pickle(str(path), arrays, py2=True)
    data = path.read_bytes()
    assert b"numpy.core.multiarray" in data
    with pytest.raises(UnicodeDecodeError):  # what the default decoding makes of py2 str
        pickle.loads(data)
    loaded, meta = load_pdparams(str(path))
    assert meta == {}
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_safe_unpickle_keeps_plain_containers_and_refuses_builtins():
    data = pickle.dumps({"a": np.ones(2, np.float32), "table": {"a": "param_0"}, "n": [1, 2.5]})
    assert safe_unpickle(data)["table"] == {"a": "param_0"}
    with pytest.raises(WeightFileError, match="builtins.eval"):
        safe_unpickle(b"cbuiltins\neval\n(S'1+1'\ntR.")


@pytest.mark.parametrize("writer", ["pickle", "torch", "tensor"])
def test_truncated_files_give_a_clear_error(tmp_path, writer):
    arrays = {"w": np.random.RandomState(0).rand(64, 64).astype(np.float32)}
    if writer == "pickle":
        path = tmp_path / "t.pdparams"
        save_fluid_pickle(str(path), arrays)
        load = load_pdparams
    elif writer == "torch":
        torch = pytest.importorskip("torch")
        path = tmp_path / "t.pth"
        torch.save({"state_dict": {"w": torch.from_numpy(arrays["w"])}}, str(path))
        load = load_torch
    else:
        from tools.weights.standin import save_tensor_folder

        save_tensor_folder(str(tmp_path / "folder"), arrays)
        path = tmp_path / "folder" / "w"
        load = load_tensor_folder
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    target = str(path.parent) if writer == "tensor" else str(path)
    with pytest.raises(WeightFileError, match="truncated"):
        load(target)


@pytest.mark.parametrize("dtype, shape", [(np.float32, (64, 3, 3, 3)), (np.float32, (1000,)),
                                          (np.int64, (2, 5)), (np.float16, (7,)),
                                          (np.float64, (1,))])
def test_fluid_tensor_files_written_by_paddle_parse_exactly(tmp_path, dtype, shape):
    from tools.weights.standin import save_tensor_folder

    value = np.random.RandomState(1).normal(size=shape).astype(dtype)
    save_tensor_folder(str(tmp_path), {"p": value})
    parsed = read_paddle_tensor((tmp_path / "p").read_bytes())
    assert parsed.dtype == value.dtype and parsed.shape == value.shape
    np.testing.assert_array_equal(parsed, value)


def test_save_is_readable_by_paddle_and_keeps_meta(tmp_path):
    import paddle

    arrays = {"head.solo_cate.bias": np.full(80, -4.6, np.float32)}
    path = str(tmp_path / "out.pdparams")
    save_pdparams(arrays, path, {"preprocess": "mmcv"})
    loaded, meta = load_pdparams(path)
    assert meta == {"preprocess": "mmcv"}
    np.testing.assert_array_equal(loaded["head.solo_cate.bias"], arrays["head.solo_cate.bias"])
    by_paddle = paddle.load(path)
    np.testing.assert_array_equal(by_paddle["head.solo_cate.bias"].numpy(),
                                  arrays["head.solo_cate.bias"])
    assert by_paddle[META_KEY] == {"preprocess": "mmcv"}


def test_interrupted_save_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from tools.weights import files

    path = tmp_path / "out.pdparams"
    save_pdparams({"a": np.zeros(3, np.float32)}, str(path))
    before = path.read_bytes()

    def dump_then_die(obj, f, protocol):
        f.write(b"half a pickle")
        raise KeyboardInterrupt  # as if the process were interrupted mid-write

    monkeypatch.setattr(files.pickle, "dump", dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_pdparams({"a": np.ones(3, np.float32)}, str(path))
    assert os.listdir(tmp_path) == ["out.pdparams"]
    assert path.read_bytes() == before


def test_check_finite_names_the_tensors_and_counts_them():
    from tools.weights.files import check_finite

    arrays = {f"layer{i}.weight": np.ones(3, np.float32) for i in range(9)}
    arrays["steps"] = np.array([2 ** 62], np.int64)  # integers have no NaN
    assert check_finite(arrays, "w.pdparams") is arrays
    for i, bad in enumerate([np.nan, np.inf, -np.inf, np.nan, np.nan, np.nan, np.nan]):
        arrays[f"layer{i}.weight"] = np.array([1, bad], np.float16 if i % 2 else np.float64)
    with pytest.raises(WeightFileError) as err:
        check_finite(arrays, "w.pdparams")
    message = str(err.value)
    assert message.startswith("w.pdparams: 7 tensor(s) hold NaN or infinite values "
                              "(layer0.weight, layer1.weight, layer2.weight, layer3.weight, "
                              "layer4.weight and 2 more)")
    assert "\n" not in message


@pytest.mark.parametrize("dtype, message", [("bfloat16", "has no numpy form"),
                                            ("complex64", "not a number type")])
def test_pth_tensors_must_be_plain_numbers(tmp_path, dtype, message):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "w.pth")
    torch.save({"state_dict": {"w": torch.zeros(2, dtype=getattr(torch, dtype))}}, path)
    with pytest.raises(WeightFileError, match=message) as err:
        load_torch(path)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_meta_must_be_text_and_a_folder_is_not_a_pickle(tmp_path):
    path = tmp_path / "m.pdparams"
    path.write_bytes(pickle.dumps({"w": np.ones(2, np.float32), META_KEY: ["x"]}))
    with pytest.raises(WeightFileError, match="not a table of text"):
        load_pdparams(str(path))
    with pytest.raises(WeightFileError, match="cannot read it"):
        load_pdparams(str(tmp_path))
