"""The opcode-level pickle reader: what real weight files hold comes out exactly as
pickle.loads makes it; everything else is one refusal line."""

import collections
import pickle
import pickletools

import numpy as np
import pytest

from tests.fixtures import hostile
from tools.weights import safe_pickle
from tools.weights.safe_pickle import PickleRefused, loads
from tools.weights.standin import save_fluid_pickle, save_paddle2_pdparams

PLAIN = ["<f2", "<f4", "<f8", ">f4", ">f8", "|i1", "<i2", "<i4", "<i8", ">i8", "|u1", "<u2",
         "<u4", "<u8", "|b1"]


def numpy1_names(data):
    """``data`` as numpy 1.x writes it (numpy.core, not numpy._core), lengths kept right."""
    for new, old in ((b"numpy._core.multiarray", b"numpy.core.multiarray"),
                     (b"numpy._core.numeric", b"numpy.core.numeric")):
        data = data.replace(b"c" + new + b"\n", b"c" + old + b"\n")  # GLOBAL (protocol 0-3)
        data = data.replace(b"\x8c" + bytes([len(new)]) + new, b"\x8c" + bytes([len(old)]) + old)
    return pickletools.optimize(data) if data[1:2] >= b"\x04" else data  # re-frame


def sample():
    rng = np.random.RandomState(0)
    arrays = {d: (rng.normal(size=(3, 4)) * 50).astype(d) for d in PLAIN}
    arrays.update(fortran=np.asfortranarray(rng.rand(5, 3).astype("f4")),
                  strided=rng.rand(6, 6).astype("f4")[::2, 1::2], zero_d=np.array(3.5, "f4"),
                  empty=np.zeros((0, 3), "f4"), large=rng.rand(300, 300).astype("f4"))
    shared = np.arange(4, dtype="f4")
    return {"arrays": arrays, "scalar": np.float32(2.5), "shared": [shared, shared],
            "meta": collections.OrderedDict(a=[1, 2.5, None, True, "é", b"\x00\xff", (1, 2)]),
            "big": 2 ** 70, "negative": -2 ** 40}


def same(ours, ref):
    if isinstance(ref, (np.ndarray, np.generic)):
        ref = np.asarray(ref)
        return (isinstance(ours, np.ndarray) and ours.shape == ref.shape
                and ours.dtype == ref.dtype.newbyteorder("=") and np.array_equal(ours, ref)
                and ours.flags.c_contiguous and ours.flags.owndata)
    if type(ours) is not type(ref):
        return False
    if isinstance(ref, dict):
        return list(ours) == list(ref) and all(same(ours[k], ref[k]) for k in ref)
    if isinstance(ref, (list, tuple)):
        return len(ours) == len(ref) and all(same(a, b) for a, b in zip(ours, ref))
    return ours == ref


@pytest.mark.parametrize("names", ["numpy2", "numpy1"])
@pytest.mark.parametrize("protocol", range(6))
def test_reads_what_pickle_writes_at_every_protocol(protocol, names):
    data = pickle.dumps(sample(), protocol=protocol)
    if names == "numpy1":
        data = numpy1_names(data)
        assert b"numpy._core" not in data
    assert same(loads(data), pickle.loads(data))


def test_reads_python2_pickles(tmp_path):
    # Protocol 0 as Python 2 wrote it: str literals, the data an escaped byte string.
    py2 = (b"(dp0\nS'w'\np1\ncnumpy.core.multiarray\n_reconstruct\np2\n(cnumpy\nndarray\np3\n"
           b"(I0\ntp4\nS'b'\np5\ntp6\nRp7\n(I1\n(I3\ntp8\ncnumpy\ndtype\np9\n(S'f4'\np10\nI0\n"
           b"I1\ntp11\nRp12\n(I3\nS'<'\np13\nNNNI-1\nI-1\nI0\ntp14\nbI00\n"
           b"S'\\x00\\x00\\x80?\\x00\\x00\\x00@\\x00\\x00@@'\np15\ntp16\nbs.")
    assert same(loads(py2), pickle.loads(py2, encoding="latin1"))
    path = tmp_path / "py2.pdparams"  # protocol 2, byte strings as Python 2 str
    save_fluid_pickle(str(path), {"w": np.linspace(-1, 1, 300).astype(np.float32)}, py2=True)
    assert same(loads(path.read_bytes()), pickle.loads(path.read_bytes(), encoding="latin1"))


def test_reads_paddle_save_and_stand_ins(tmp_path):
    import paddle

    layer = paddle.nn.Sequential(paddle.nn.Conv2D(2, 3, 3), paddle.nn.BatchNorm2D(3))
    for protocol in (2, 3, 4):
        path = str(tmp_path / f"paddle{protocol}.pdparams")
        paddle.save(layer.state_dict(), path, protocol=protocol)
        with open(path, "rb") as f:
            data = f.read()
        ours = loads(data)
        assert "StructuredToParameterName@@" in ours
        assert same(ours, pickle.loads(data))
    path = str(tmp_path / "ppdet2.pdparams")
    save_paddle2_pdparams(path, {"mask_head.w": np.ones((2, 3), np.float32)})
    with open(path, "rb") as f:
        assert same(loads(f.read()), pickle.loads(open(path, "rb").read()))


@pytest.mark.parametrize("state, why", [
    ((3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0), "fields"),
    ((3, "<", None, None, None, -1, -1, 63), "flags"),
    ((3, "<", (np.dtype("f4"), (2,)), None, None, -1, -1, 0), "subarray"),
    ((3, "<", None, None, None, 8, -1, 0), "elsize"),
    ((3, "|", None, None, None, -1, -1, 0), "byte order of a 4-byte type"),
    ((4, "<", None, None, None, -1, -1, 0, {"m": 1}), "metadata"),
])
def test_only_plain_dtype_states_are_interpreted(state, why):
    def ops(obj):  # opcodes without PROTO, STOP and memo stores
        return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]

    data, plain = ops({"w": np.ones(2, "f4")}), ops((3, "<", None, None, None, -1, -1, 0))
    assert data.count(plain) == 1
    data, forged = b"\x80\x02" + data + b".", ops(state)
    assert same(loads(data), {"w": np.ones(2, "f4")})
    with pytest.raises(PickleRefused, match="not a plain numeric type"):
        loads(data.replace(plain, forged))


@pytest.mark.parametrize("data, message", [
    (b"\x80\x02]q\x00h\x00\x85a.", "changes a container after placing it"),  # L = [(L,)]
    (b"cnumpy.n\x1b[31m\narray\n.", r"numpy.n\x1b[31m.array"),               # escaped
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf16\x86R.", "latin1"),
    (b"\x80\x02ccollections\nOrderedDict\ncposix\nsystem\n", "posix.system"),
    (b"\x80\x04\x8f.", "not one a weight file uses"),                           # sets
    (b"\x80\x02X\x01\x00\x00\x00aQ.", "not one a weight file uses"),             # BINPERSID
    (b"\x80\x05\x97.", "not one a weight file uses"),                           # NEXT_BUFFER
    (b"\x80\x02cnumpy\ndtype\n.", "used as a value"),                           # a bare global
    (b"\x80\x02K\x01", "truncated"),
])
def test_refusals_are_one_line(data, message):
    with pytest.raises(PickleRefused) as err:
        loads(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_stack_and_memo_are_bounded(monkeypatch):
    monkeypatch.setattr(safe_pickle, "MAX_STACK", 1000)
    monkeypatch.setattr(safe_pickle, "MAX_MEMO", 1000)
    with pytest.raises(PickleRefused, match="1000 values on the pickle stack"):
        loads(b"\x80\x02" + b"N" * 2000 + b".")
    with pytest.raises(PickleRefused, match="1000 memo entries"):
        loads(b"\x80\x04N" + b"\x94" * 2000 + b".")
    assert loads(b"\x80\x04N" + b"\x94" * 999 + b".") is None


def test_the_forged_dtype_of_the_corpus_is_refused_before_numpy_sees_it():
    with pytest.raises(PickleRefused, match="'V8' is not a plain numeric type"):
        loads(hostile.forged_object_dtype())
