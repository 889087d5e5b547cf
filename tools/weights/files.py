"""Reading and writing weight files without ever running code from them.

Weight files come from the internet. Python pickles can import and call anything, so:
  * PyTorch ``.pth`` files are read with ``torch.load(weights_only=True)``;
  * pickled ``.pdparams`` (PaddleDetection static era, Paddle 2.x ``paddle.save``, and ours)
    go through :class:`SafeUnpickler`, which admits numpy arrays and plain containers only;
  * Paddle's per-parameter tensor files (``fluid.io.save_params`` folders and their .tar)
    are parsed from their binary layout, no pickle involved.
Every reader returns ``{name: numpy array}``.
"""

import io
import os
import pickle
import struct
import tarfile

import numpy as np

from ..errors import UserError
from ..files import atomic_write

# Our converted files carry a small dict of strings under this key (which preprocessing
# the weights expect, where they came from). paddle.load reads the file like any other.
META_KEY = "solov2_meta"
# paddle.save adds this bookkeeping entry to state dicts; it holds no tensor.
PADDLE_NAME_TABLE = "StructuredToParameterName@@"


class WeightFileError(UserError):
    """A weight file is missing, truncated, of an unknown format, or unsafe."""


def _latin1_encode(text, encoding="latin1"):
    # Python 3 pickles bytes with protocol 2 as _codecs.encode(str, 'latin1'); allow exactly
    # that and nothing else.
    if encoding not in ("latin1", "latin-1"):
        raise WeightFileError(f"pickle asks for codec {encoding!r}; refusing")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays, dtypes, scalars and OrderedDicts.

    Anything else a pickle asks to import (os.system, builtins.eval, ...) raises
    WeightFileError before it is looked up. Pickles written by numpy 1.x refer to
    ``numpy.core``; numpy 2 moved it to ``numpy._core``, so both are mapped.
    """

    _NUMPY = {
        ("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if module in ("numpy", "numpy.core", "numpy._core") and name in ("ndarray", "dtype"):
            return getattr(np, name)
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix) and (module[len(prefix):], name) in self._NUMPY:
                submodule = __import__("numpy._core." + module[len(prefix):],
                                       fromlist=[name])
                return getattr(submodule, name)
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict

            return OrderedDict
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise WeightFileError(
            f"the file asks to import {module}.{name}, which a weight file never needs; "
            "refusing to load it")


def safe_unpickle(data):
    """Unpickle bytes with SafeUnpickler; files from Python 2 are decoded as latin1."""
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except UnicodeDecodeError:
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def _arrays(obj, path):
    """Check that a loaded mapping holds arrays and return {name: ndarray}."""
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    arrays = {}
    for key, value in obj.items():
        if key in (META_KEY, PADDLE_NAME_TABLE):
            continue
        if not isinstance(value, np.ndarray):
            raise WeightFileError(f"{path}: entry {key!r} is a {type(value).__name__}, "
                                  "not an array")
        arrays[key] = value
    return arrays


def _read_bytes(path):
    if not os.path.exists(path):
        raise WeightFileError(f"{path}: no such file")
    with open(path, "rb") as f:
        return f.read()


def load_pdparams(path):
    """(arrays, meta) from a pickled .pdparams; meta is {} unless we wrote the file."""
    data = _read_bytes(path)
    try:
        obj = safe_unpickle(data)
    except WeightFileError as err:
        raise WeightFileError(f"{path}: {err}") from None
    except Exception as err:  # truncated or not a pickle at all
        raise WeightFileError(f"{path}: not a readable .pdparams pickle "
                              f"({type(err).__name__}: {err}); is the file truncated?") from None
    meta = obj.get(META_KEY, {}) if isinstance(obj, dict) else {}
    return _arrays(obj, path), dict(meta)


def load_torch(path, key="state_dict"):
    """{name: ndarray} from a PyTorch checkpoint (zip or legacy format), safely.

    mmcv checkpoints wrap the weights as {'meta': ..., 'state_dict': ...}; a bare state dict
    works too. A 'module.' prefix left by DataParallel is removed.
    """
    try:
        import torch
    except ImportError:
        raise WeightFileError("reading .pth files needs PyTorch (CPU is enough): "
                              "pip install torch") from None
    if not os.path.exists(path):
        raise WeightFileError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightFileError(f"{path}: refused by torch.load(weights_only=True): {err}") from None
    except Exception as err:
        raise WeightFileError(f"{path}: not a readable PyTorch checkpoint "
                              f"({type(err).__name__}: {err}); is the file truncated?") from None
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path}: expected a state dict, found {type(obj).__name__}")
    arrays = {}
    for name, value in obj.items():
        if not hasattr(value, "numpy"):
            raise WeightFileError(f"{path}: entry {name!r} is not a tensor")
        if name.startswith("module."):
            name = name[len("module."):]
        arrays[name] = value.detach().cpu().numpy()
    return arrays


# --------------------------------------------------------------- Paddle tensor files
# A fluid tensor file is: uint32 version (0), uint64 LoD level count, per level a uint64
# byte size and the offsets, uint32 tensor version (0), int32 size of a TensorDesc protobuf,
# the protobuf (field 1: data type enum, field 2: repeated int64 dims), then the raw
# little-endian data.
_PADDLE_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16,
                  5: np.float32, 6: np.float64, 20: np.uint8, 21: np.int8}


def _varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise WeightFileError("truncated TensorDesc")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _tensor_desc(buf):
    dtype, dims, pos = None, [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            chunk, pos = buf[pos:pos + length], pos + length
            if field == 2:  # packed dims
                sub = 0
                while sub < len(chunk):
                    value, sub = _varint(chunk, sub)
                    dims.append(value)
        else:
            raise WeightFileError(f"unexpected protobuf wire type {wire} in TensorDesc")
    return dtype, dims


def read_paddle_tensor(data):
    """Parse one fluid tensor file (bytes) into an ndarray."""
    try:
        pos = 4
        (lod_levels,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        for _ in range(lod_levels):
            (size,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + size
        pos += 4  # tensor version
        (desc_size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        dtype_code, dims = _tensor_desc(data[pos:pos + desc_size])
        pos += desc_size
    except struct.error:
        raise WeightFileError("truncated tensor header") from None
    if dtype_code not in _PADDLE_DTYPES:
        raise WeightFileError(f"unsupported tensor data type {dtype_code}")
    dtype = np.dtype(_PADDLE_DTYPES[dtype_code]).newbyteorder("<")
    count = int(np.prod(dims)) if dims else 1
    if len(data) - pos != count * dtype.itemsize:
        raise WeightFileError(f"tensor data holds {len(data) - pos} bytes, dims {dims} "
                              f"need {count * dtype.itemsize}; truncated?")
    return np.frombuffer(data, dtype, count, pos).reshape(dims).astype(dtype.newbyteorder("="))


def load_tensor_folder(path):
    """{name: ndarray} from a folder of fluid tensor files, or a .tar of one."""
    files = {}
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full) and not name.startswith("."):
                files[name] = _read_bytes(full)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and not base.startswith("."):
                    files[base] = tar.extractfile(member).read()
    else:
        raise WeightFileError(f"{path}: neither a folder nor a .tar of parameter files")
    if not files:
        raise WeightFileError(f"{path}: holds no parameter files")
    arrays = {}
    for name, data in files.items():
        try:
            arrays[name] = read_paddle_tensor(data)
        except WeightFileError as err:
            raise WeightFileError(f"{path}: parameter file {name!r}: {err}") from None
    return arrays


def load_any(path):
    """(arrays, meta, kind) for any supported file; kind is 'torch', 'pickle' or 'folder'."""
    if not os.path.exists(path):
        raise WeightFileError(f"{path}: no such file or folder")
    if os.path.isdir(path) or path.endswith(".tar"):
        return load_tensor_folder(path), {}, "folder"
    if path.endswith((".pth", ".pt")):
        return load_torch(path), {}, "torch"
    arrays, meta = load_pdparams(path)
    return arrays, meta, "pickle"


def save_pdparams(arrays, path, meta=None):
    """Write {name: ndarray} (+ meta) as a .pdparams that paddle.load also reads.

    Written through tools.files.atomic_write: an interrupted write never leaves a
    half-written file under the final name, and a full disk or an unwritable folder is an
    OutputError naming ``path``, with the previous file at ``path`` untouched.
    """
    obj = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    if meta:
        obj[META_KEY] = {str(k): str(v) for k, v in meta.items()}
    with atomic_write(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
