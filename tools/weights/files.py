"""Reading and writing weight files without ever running code from them.

Weight files come from the internet. Python pickles can import and call anything, so:
  * PyTorch ``.pth`` files are read with ``torch.load(weights_only=True)``;
  * pickled ``.pdparams`` (PaddleDetection static era, Paddle 2.x ``paddle.save``, and ours)
    are read by tools/weights/safe_pickle.py, which interprets the opcodes itself and
    builds only plain containers and arrays of plain numeric dtypes from exactly the bytes
    the file holds; no object is ever given state chosen by the file;
  * Paddle's per-parameter tensor files (``fluid.io.save_params`` folders and their .tar)
    are parsed from their binary layout, no pickle involved.
Every reader returns ``{name: numpy array}`` of bool, integer or float arrays.
:func:`check_finite` is the separate check, made where weights go into a model or a
converter, that none of them is NaN or infinite.
"""

import os
import pickle
import struct
import tarfile

import numpy as np

from ..errors import UserError
from ..files import atomic_write
from . import safe_pickle

# Our converted files carry a small dict of strings under this key (which preprocessing
# the weights expect, where they came from). paddle.load reads the file like any other.
META_KEY = "solov2_meta"
# paddle.save adds this bookkeeping entry to state dicts; it holds no tensor.
PADDLE_NAME_TABLE = "StructuredToParameterName@@"


class WeightFileError(UserError):
    """A weight file is missing, truncated, of an unknown format, or unsafe."""


def safe_unpickle(data):
    """The object pickled in ``data`` (bytes), read by tools/weights/safe_pickle.py;
    raises WeightFileError for anything but plain containers and numeric arrays."""
    try:
        return safe_pickle.loads(data)
    except safe_pickle.PickleRefused as err:
        raise WeightFileError(str(err)) from None


# What a weight may hold: bool, signed and unsigned integers, floats (numpy dtype kinds).
NUMERIC_KINDS = "biuf"


def _check_numeric(name, value, path):
    if value.dtype.kind not in NUMERIC_KINDS:
        raise WeightFileError(f"{path}: tensor {name!r} has dtype {value.dtype}, not a "
                              "number type; refusing it")


def _arrays(obj, path):
    """Check that a loaded mapping holds numeric arrays and return {name: ndarray}."""
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    arrays = {}
    for key, value in obj.items():
        if key in (META_KEY, PADDLE_NAME_TABLE):
            continue
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise WeightFileError(f"{path}: entry {str(key)[:80]!r} is a "
                                  f"{type(value).__name__}, not an array")
        _check_numeric(key, value, path)
        arrays[key] = value
    return arrays


def _meta(obj, path):
    """Our files' meta: text keys and values (save_pdparams writes nothing else)."""
    meta = obj.get(META_KEY, {})
    if not (isinstance(meta, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise WeightFileError(f"{path}: entry {META_KEY!r} is not a table of text")
    return dict(meta)


def _read_bytes(path):
    if not os.path.exists(path):
        raise WeightFileError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:  # a folder, no permission, an I/O error
        raise WeightFileError(f"{path}: cannot read it ({err.strerror or err})") from None


def load_pdparams(path):
    """(arrays, meta) from a pickled .pdparams; meta is {} unless we wrote the file."""
    try:
        obj = safe_pickle.loads(_read_bytes(path))
    except safe_pickle.PickleRefused as err:
        raise WeightFileError(f"{path}: {err}") from None
    return _arrays(obj, path), _meta(obj, path)  # _arrays checks obj is a dict


def check_finite(arrays, path, shown=5):
    """Raise WeightFileError if any float tensor holds NaN or infinity: such weights make
    every score NaN, and a run would report zero instances instead of failing."""
    bad = [name for name, value in arrays.items()
           if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if bad:
        names = ", ".join(bad[:shown]) + (f" and {len(bad) - shown} more"
                                          if len(bad) > shown else "")
        raise WeightFileError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values "
                              f"({names}); the file is damaged or comes from a diverged run")
    return arrays


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
        if not isinstance(value, torch.Tensor):
            raise WeightFileError(f"{path}: entry {name!r} is not a tensor")
        try:
            array = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as err:  # bfloat16, quantized, sparse, ...
            raise WeightFileError(f"{path}: tensor {name!r} ({value.dtype}) has no numpy "
                                  f"form: {str(err).splitlines()[0]}") from None
        if name.startswith("module."):
            name = name[len("module."):]
        _check_numeric(name, array, path)
        arrays[name] = array
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
