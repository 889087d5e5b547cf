"""A pickle reader for weight files that never lets the file construct an object.

``pickle.Unpickler`` hands the state a file supplies to numpy itself, and numpy trusts it:
a ``numpy.dtype`` BUILD state can declare object fields while claiming to hold none, after
which numpy reads eight bytes of the file as a pointer (a crash, or worse), and a call of
``numpy.ndarray(shape)`` yields uninitialised memory. Restricting which globals a pickle
may import is therefore not enough.

This module walks the opcode stream itself (the opcodes are listed in ``pickletools``) with
a small stack machine. A GLOBAL becomes an inert marker; REDUCE and BUILD on a marker are
interpreted here, and the only objects that come out are:
  * str, bytes, int, float, bool, None, and list / tuple / dict / OrderedDict of them with
    text keys;
  * numpy arrays of a plain numeric dtype (DTYPES), made from a shape of non-negative ints
    and a byte string whose length is exactly size * itemsize: the data are copied out of
    the file, never interpreted as anything but numbers.
That covers what numpy 1.x and 2.x write for ``pickle.dump`` at protocols 0 to 5 (arrays as
``_reconstruct`` + BUILD, or ``_frombuffer`` at protocol 5; 0-d values as ``scalar``),
Python 2 pickles (byte strings, ``_codecs.encode``), fluid.save and paddle.save. Anything
else raises :class:`PickleRefused` with one line saying what was refused.

Resources are bounded by the file: a declared size is compared with the bytes present
before anything is allocated, nesting, the stack and the memo have limits far above what
a weight file needs, and a truncated stream is an error, not a partial result.
"""

import codecs
import collections
import struct

import numpy as np

from ..errors import UserError

# numpy dtype names a weight file may use (dtype(name, align, copy) in the pickle), by
# item size; the byte order comes from the BUILD state.
DTYPES = {"f2": 2, "f4": 4, "f8": 8, "i1": 1, "i2": 2, "i4": 4, "i8": 8,
          "u1": 1, "u2": 2, "u4": 4, "u8": 8, "b1": 1}
MAX_DEPTH = 100        # nested containers; a state dict needs about 4
MAX_STACK = 1_000_000  # pickle batches containers by 1000 items, so real files stay small
MAX_MEMO = 4_000_000   # a few entries per tensor
MAX_NDIM = 32

# Globals a weight file may name, mapped to the marker that stands for them. numpy 2
# renamed numpy.core to numpy._core; files from either say one or the other.
_NUMPY_CORE = ("numpy.core", "numpy._core")
GLOBALS = {("numpy", "ndarray"): "ndarray", ("numpy", "dtype"): "dtype",
           ("collections", "OrderedDict"): "OrderedDict", ("_codecs", "encode"): "encode",
           # empty bytes at protocols 0-2 (zero-size arrays): bytes(); Python 2 spelling too
           ("builtins", "bytes"): "bytes", ("__builtin__", "bytes"): "bytes"}
for _core in _NUMPY_CORE:
    GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = "_reconstruct"
    GLOBALS[(f"{_core}.multiarray", "scalar")] = "scalar"
    GLOBALS[(f"{_core}.numeric", "_frombuffer")] = "_frombuffer"


class PickleRefused(UserError):
    """The pickle is damaged, truncated, or asks for something a weight file never needs."""


# ------------------------------------------------------------------ stack values
# Scalars (str, bytes, int, float, bool, None) sit on the stack as themselves; everything
# else is one of these nodes, so that a file can never hand a half-made object to code
# that does not expect it.
class _Global:
    def __init__(self, name):
        self.name = name
        self.depth = 0


class _Dtype:
    """numpy.dtype(name, False, True); usable once BUILD has given it a plain state."""

    def __init__(self, name):
        self.name, self.dtype, self.depth = name, None, 0


class _Array:
    """_reconstruct(ndarray, (0,), b'b'): an empty shell until BUILD fills ``value``."""

    def __init__(self, value=None):
        self.value, self.depth = value, 1


class _Container:
    """A list or dict being filled. Once it is placed inside another object it is frozen:
    pickle writes every container complete before its parent uses it, and freezing keeps
    the recorded depth exact and rules out cycles."""

    def __init__(self, value):
        self.value, self.depth, self.frozen = value, 1, False


class _Tuple:
    def __init__(self, items):
        self.items = items
        self.depth = 1 + max((_depth(x) for x in items), default=0)
        self._value = None

    def value(self):
        if self._value is None:
            self._value = tuple(_plain(x) for x in self.items)
        return self._value


def _depth(obj):
    return getattr(obj, "depth", 0)


def _plain(obj):
    """The object a node stands for, to be placed inside a container or returned."""
    if isinstance(obj, _Container):
        obj.frozen = True
        return obj.value
    if isinstance(obj, _Tuple):
        return obj.value()
    if isinstance(obj, _Array):
        if obj.value is None:
            raise PickleRefused("an array is used before its data were given")
        return obj.value
    if isinstance(obj, _Dtype):
        raise PickleRefused(f"a bare numpy dtype {obj.name!r} is not a weight value")
    if isinstance(obj, _Global):
        raise PickleRefused(f"{obj.name} is used as a value; refusing")
    if isinstance(obj, memoryview):  # bytes that did not become array data
        return bytes(obj)
    return obj


def _check_bool(value, what):
    if type(value) is bool or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise PickleRefused(f"{what} is {value!r}, not a bool")


def _as_bytes(data, what):
    """Array data: bytes (or a view of them in the file), or a Python 2 byte string (read
    as latin-1 text)."""
    if isinstance(data, memoryview):
        return data
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        try:
            return data.encode("latin1")
        except UnicodeEncodeError:
            pass
    raise PickleRefused(f"{what} is a {type(data).__name__}, not a byte string")


def _shape(obj):
    items = obj.items if isinstance(obj, _Tuple) else None
    if items is None or len(items) > MAX_NDIM or any(
            type(d) is not int or not 0 <= d < 1 << 62 for d in items):
        raise PickleRefused("an array shape is not a tuple of non-negative ints")
    return tuple(items)


def _make_array(dtype_node, shape, data, fortran):
    """A copy of ``data`` as an array; its length must match the shape exactly."""
    if not isinstance(dtype_node, _Dtype) or dtype_node.dtype is None:
        raise PickleRefused("an array's dtype is not a plain numpy dtype")
    dtype = dtype_node.dtype
    size = 1
    for d in shape:
        size *= d
    if len(data) != size * dtype.itemsize:
        raise PickleRefused(f"an array of shape {list(shape)} and dtype {dtype.str} needs "
                            f"{size * dtype.itemsize} bytes, the file gives {len(data)}")
    flat = np.frombuffer(data, dtype, size) if size else np.zeros(0, dtype)
    array = flat.reshape(shape, order="F" if fortran else "C")
    array = array.astype(dtype.newbyteorder("="), order="C")  # a copy, in native order
    if dtype.kind == "b":  # any byte other than 0 / 1 would be an invalid bool
        array = array.view(np.uint8).astype(bool)
    return array


# --------------------------------------------------------------- REDUCE / BUILD
def _reduce(func, args):
    if not isinstance(func, _Global):
        raise PickleRefused("the file calls something that is not a known global")
    if not isinstance(args, _Tuple):
        raise PickleRefused(f"{func.name} is called with arguments that are not a tuple")
    items, name = args.items, func.name
    if name == "_reconstruct":
        # numpy always writes _reconstruct(ndarray, (0,), b'b'); the data come in BUILD.
        if (len(items) == 3 and isinstance(items[0], _Global) and items[0].name == "ndarray"
                and isinstance(items[1], _Tuple) and items[1].items == [0]
                and items[2] in (b"b", "b")):
            return _Array()
        raise PickleRefused("numpy _reconstruct with arguments numpy never writes")
    if name == "dtype":
        if (len(items) == 3 and isinstance(items[0], str) and items[0] in DTYPES
                and not _check_bool(items[1], "dtype align") and
                _check_bool(items[2], "dtype copy")):
            return _Dtype(items[0])
        raise PickleRefused(f"numpy dtype {items[0] if items else ''!r} is not a plain "
                            f"numeric type ({', '.join(DTYPES)}); refusing it")
    if name == "_frombuffer":  # protocol 5: _frombuffer(buffer, dtype, shape, order)
        if len(items) == 4 and items[3] in ("C", "F"):
            data = _as_bytes(items[0], "an array buffer")
            return _Array(_make_array(items[1], _shape(items[2]), data, items[3] == "F"))
        raise PickleRefused("numpy _frombuffer with arguments numpy never writes")
    if name == "scalar":  # a 0-d value: scalar(dtype, bytes); kept as a 0-d array
        if len(items) == 2:
            return _Array(_make_array(items[0], (), _as_bytes(items[1], "scalar data"), False))
        raise PickleRefused("numpy scalar with arguments numpy never writes")
    if name == "OrderedDict":
        # Python 3 writes OrderedDict() and then SETITEMS; Python 2 passes [[k, v], ...].
        if not items:
            return _Container(collections.OrderedDict())
        pairs = _plain(items[0]) if len(items) == 1 else None
        if isinstance(pairs, list) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                           and isinstance(p[0], str) for p in pairs):
            node = _Container(collections.OrderedDict(pairs))
            node.depth = _depth(items[0])
            return node
        raise PickleRefused("OrderedDict with arguments other than text-keyed pairs")
    if name == "encode":
        # Python 3 writes bytes at protocol 2 as _codecs.encode(text, 'latin1').
        if (len(items) == 2 and isinstance(items[0], str)
                and items[1] in ("latin1", "latin-1")):
            return _as_bytes(items[0], "encoded bytes")
        raise PickleRefused("_codecs.encode with arguments other than (text, 'latin1')")
    if name == "bytes" and not items:
        return b""
    if name == "ndarray":
        raise PickleRefused("the file calls numpy.ndarray(...) itself, which makes an array "
                            "of uninitialised memory, not weights; refusing it")
    raise PickleRefused(f"the file calls {name} with arguments it never needs")


def _build(obj, state):
    if isinstance(obj, _Dtype) and obj.dtype is None:
        # The state of a plain dtype: version 3, byte order, no subarray, no names or
        # fields, no explicit size or alignment, no flags (any flag means object-like).
        items = state.items if isinstance(state, _Tuple) else ()
        order = items[1] if len(items) == 8 else None
        wanted = ("|",) if DTYPES[obj.name] == 1 else ("<", ">")
        if (order in wanted and type(items[0]) is int and items[0] == 3
                and items[2:5] == [None, None, None]
                and all(type(x) is int for x in items[5:])
                and items[5:] == [-1, -1, 0]):
            obj.dtype = np.dtype(order + obj.name)
            return
        raise PickleRefused(f"numpy dtype {obj.name!r} comes with a state that is not a "
                            "plain numeric type (fields, objects, flags or sizes); refusing")
    if isinstance(obj, _Array) and obj.value is None:
        # ndarray state: (1, shape, dtype, is_fortran, data bytes)
        items = state.items if isinstance(state, _Tuple) else ()
        if len(items) == 5 and type(items[0]) is int and items[0] == 1:
            fortran = _check_bool(items[3], "the array's fortran flag")
            obj.value = _make_array(items[2], _shape(items[1]),
                                    _as_bytes(items[4], "array data"), fortran)
            return
        raise PickleRefused("an array state that numpy never writes (object arrays "
                            "are refused)")
    raise PickleRefused("the file sets the state of an object that takes none")


# ------------------------------------------------------------------ the machine
class _Reader:
    def __init__(self, data):
        self.data, self.pos = memoryview(data), 0
        self.stack, self.marks, self.memo = [], [], {}

    # ---- reading the stream
    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise PickleRefused(f"the pickle ends inside an opcode at byte {self.pos} "
                                "(truncated?)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(chunk)

    def view(self, n):
        """Like take, without a copy: the bytes of an array are copied once, by
        _make_array, instead of once more into the memo."""
        if n < 0 or self.pos + n > len(self.data):
            raise PickleRefused(f"the pickle ends inside an opcode at byte {self.pos} "
                                "(truncated?)")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self):
        end = self.data.obj.find(b"\n", self.pos) if isinstance(self.data.obj, bytes) else -1
        if end < 0:
            raise PickleRefused(f"the pickle ends inside a text opcode at byte {self.pos} "
                                "(truncated?)")
        text = bytes(self.data[self.pos:end])
        self.pos = end + 1
        return text

    # ---- the stack
    def push(self, obj):
        if len(self.stack) >= MAX_STACK:
            raise PickleRefused(f"more than {MAX_STACK} values on the pickle stack")
        self.stack.append(obj)

    def pop(self):
        if not self.stack:
            raise PickleRefused(f"pickle stack underflow at byte {self.pos}")
        return self.stack.pop()

    def pop_mark(self):
        if not self.marks:
            raise PickleRefused(f"pickle opcode without a MARK at byte {self.pos}")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top_container(self, kind):
        if not self.stack or not isinstance(self.stack[-1], _Container) or not isinstance(
                self.stack[-1].value, kind):
            raise PickleRefused(f"pickle adds items to something that is not a "
                                f"{kind.__name__} at byte {self.pos}")
        node = self.stack[-1]
        if node.frozen:
            raise PickleRefused("pickle changes a container after placing it elsewhere")
        return node

    def nest(self, node, child):
        depth = _depth(child) + 1
        if child is node or depth > MAX_DEPTH:
            raise PickleRefused(f"containers nested more than {MAX_DEPTH} levels deep")
        node.depth = max(node.depth, depth)
        return _plain(child)

    def add_items(self, items):
        node = self.top_container(list)
        node.value.extend(self.nest(node, x) for x in items)

    def set_items(self, items):
        if len(items) % 2:
            raise PickleRefused("SETITEMS with an odd number of values")
        node = self.top_container(dict)
        for key, value in zip(items[::2], items[1::2]):
            if not isinstance(key, str):
                raise PickleRefused(f"a dict key is a {type(key).__name__}; weight files "
                                    "use text keys")
            node.value[key] = self.nest(node, value)

    def make_tuple(self, items):
        node = _Tuple(items)
        if node.depth > MAX_DEPTH:
            raise PickleRefused(f"containers nested more than {MAX_DEPTH} levels deep")
        for x in items:  # an array is complete before anything holds it
            if isinstance(x, _Array) and x.value is None:
                raise PickleRefused("an array is used before its data were given")
            if isinstance(x, _Container):  # as complete as inside a list: see _Container
                x.frozen = True
        self.push(node)

    def memo_put(self, index):
        if len(self.memo) >= MAX_MEMO and index not in self.memo:
            raise PickleRefused(f"more than {MAX_MEMO} memo entries")
        if not self.stack:
            raise PickleRefused(f"memo store with an empty stack at byte {self.pos}")
        self.memo[index] = self.stack[-1]

    def memo_get(self, index):
        if index not in self.memo:
            raise PickleRefused(f"memo entry {index} is read before it is written")
        self.push(self.memo[index])

    def run(self):
        while True:
            at = self.pos
            code = self.take(1)
            op = _OPS.get(code)
            if op is None:
                raise PickleRefused(f"pickle opcode {code!r} at byte {at} is not one a "
                                    "weight file uses")
            if op(self) is _STOP:
                if self.marks or len(self.stack) != 1:
                    raise PickleRefused("the pickle stops with a malformed stack")
                return _plain(self.stack[0])


_STOP = object()


def _text(reader, n):
    return str(reader.take(n), "utf-8", "surrogatepass")


def _py2_string(raw):
    # A Python 2 str: bytes of unknown encoding. Read as latin-1 (what pickle does with
    # encoding='latin1'), so array data encoded back to latin-1 are the original bytes.
    return raw.decode("latin1")


def _string_literal(reader):
    raw = reader.line().rstrip(b"\r")
    if len(raw) < 2 or raw[:1] not in (b"'", b'"') or raw[-1:] != raw[:1]:
        raise PickleRefused("a STRING opcode that is not a quoted literal")
    return _py2_string(codecs.escape_decode(raw[1:-1])[0])


def _int_line(reader):
    raw = reader.line()
    if raw == b"00":
        return False
    if raw == b"01":
        return True
    return int(raw)


def _long_line(reader):
    raw = reader.line()
    return int(raw[:-1] if raw.endswith(b"L") else raw)


def _long(reader, n):
    if n > 64:  # shapes and flags fit in 8 bytes; 64 is generous
        raise PickleRefused(f"a {n}-byte integer in the pickle")
    return int.from_bytes(reader.take(n), "little", signed=True)


def _printable(text, limit=80):
    """File text for a message: control characters escaped, so that the refusal stays one
    line and cannot drive the terminal."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _global(reader, module, name):
    if not isinstance(module, str) or not isinstance(name, str):
        raise PickleRefused("a global named by something that is not text")
    marker = GLOBALS.get((module, name))
    if marker is None:
        raise PickleRefused(f"the file asks to import {_printable(module)}.{_printable(name)}, "
                            "which a weight file never needs; refusing to load it")
    return _Global(marker)


def _do_global(r):
    module = r.line().decode("utf-8")
    r.push(_global(r, module, r.line().decode("utf-8")))


def _do_stack_global(r):
    name = r.pop()
    r.push(_global(r, r.pop(), name))


def _do_reduce(r):
    args = r.pop()
    r.push(_reduce(r.pop(), args))


def _do_newobj(r):  # cls.__new__(cls, *args): only OrderedDict() is allowed
    args, cls = r.pop(), r.pop()
    if isinstance(cls, _Global) and cls.name == "OrderedDict" and isinstance(args, _Tuple) \
            and not args.items:
        r.push(_Container(collections.OrderedDict()))
        return
    raise PickleRefused("NEWOBJ of something other than OrderedDict()")


def _do_build(r):
    state = r.pop()
    if not r.stack:
        raise PickleRefused("BUILD with an empty stack")
    _build(r.stack[-1], state)


def _do_mark(r):
    if len(r.marks) >= MAX_DEPTH:
        raise PickleRefused(f"more than {MAX_DEPTH} open MARKs (nesting too deep)")
    r.marks.append(r.stack)
    r.stack = []


def _do_dict(r):
    items = r.pop_mark()
    r.push(_Container({}))
    r.set_items(items)


def _do_list(r):
    items = r.pop_mark()
    r.push(_Container([]))
    r.add_items(items)


def _do_setitem(r):
    value = r.pop()
    key = r.pop()
    r.set_items([key, value])


def _do_append(r):
    r.add_items([r.pop()])


def _do_dup(r):
    if not r.stack:
        raise PickleRefused("DUP with an empty stack")
    r.push(r.stack[-1])


def _tuple_n(n):
    def op(r):
        items = [r.pop() for _ in range(n)][::-1]
        r.make_tuple(items)
    return op


def _push(make):
    def op(r):
        r.push(make(r))
    return op


def _proto(r):
    version = r.take(1)[0]
    if version > 5:
        raise PickleRefused(f"pickle protocol {version} is newer than any known")


_OPS = {
    b"\x80": _proto,
    b"\x95": lambda r: r.unpack("<Q"),  # FRAME: a length hint; the data follow inline
    b".": lambda r: _STOP,
    b"(": _do_mark,
    b"0": lambda r: r.pop(),
    b"1": lambda r: r.pop_mark(),
    b"2": _do_dup,
    # scalars
    b"N": _push(lambda r: None),
    b"\x88": _push(lambda r: True),
    b"\x89": _push(lambda r: False),
    b"I": _push(_int_line),
    b"J": _push(lambda r: r.unpack("<i")),
    b"K": _push(lambda r: r.take(1)[0]),
    b"M": _push(lambda r: r.unpack("<H")),
    b"L": _push(_long_line),
    b"\x8a": _push(lambda r: _long(r, r.take(1)[0])),
    b"\x8b": _push(lambda r: _long(r, r.unpack("<i"))),
    b"F": _push(lambda r: float(r.line())),
    b"G": _push(lambda r: r.unpack(">d")),
    # text and bytes
    b"X": _push(lambda r: _text(r, r.unpack("<I"))),
    b"\x8c": _push(lambda r: _text(r, r.take(1)[0])),
    b"\x8d": _push(lambda r: _text(r, r.unpack("<Q"))),
    b"V": _push(lambda r: str(r.line(), "raw-unicode-escape")),
    b"S": _push(_string_literal),
    b"T": _push(lambda r: _py2_string(r.take(r.unpack("<i")))),
    b"U": _push(lambda r: _py2_string(r.take(r.take(1)[0]))),
    b"B": _push(lambda r: r.view(r.unpack("<I"))),
    b"C": _push(lambda r: r.view(r.take(1)[0])),
    b"\x8e": _push(lambda r: r.view(r.unpack("<Q"))),
    b"\x96": _push(lambda r: r.view(r.unpack("<Q"))),  # BYTEARRAY8, read as bytes
    # containers
    b"}": _push(lambda r: _Container({})),
    b"]": _push(lambda r: _Container([])),
    b")": lambda r: r.make_tuple([]),
    b"d": _do_dict,
    b"l": _do_list,
    b"t": lambda r: r.make_tuple(r.pop_mark()),
    b"\x85": _tuple_n(1),
    b"\x86": _tuple_n(2),
    b"\x87": _tuple_n(3),
    b"s": _do_setitem,
    b"u": lambda r: r.set_items(r.pop_mark()),
    b"a": _do_append,
    b"e": lambda r: r.add_items(r.pop_mark()),
    # memo
    b"p": lambda r: r.memo_put(int(r.line())),
    b"q": lambda r: r.memo_put(r.take(1)[0]),
    b"r": lambda r: r.memo_put(r.unpack("<I")),
    b"\x94": lambda r: r.memo_put(len(r.memo)),
    b"g": lambda r: r.memo_get(int(r.line())),
    b"h": lambda r: r.memo_get(r.take(1)[0]),
    b"j": lambda r: r.memo_get(r.unpack("<I")),
    # globals and calls, interpreted above
    b"c": _do_global,
    b"\x93": _do_stack_global,
    b"R": _do_reduce,
    b"\x81": _do_newobj,
    b"b": _do_build,
}


def loads(data):
    """The object a pickle (bytes) describes, built only from the pieces listed in the
    module docstring; raises PickleRefused for anything else."""
    reader = _Reader(data)
    try:
        return reader.run()
    except PickleRefused:
        raise
    except (ValueError, TypeError, OverflowError, struct.error) as err:
        # Malformed numbers or text (int('x'), invalid UTF-8, a float that is no float).
        raise PickleRefused(f"damaged pickle near byte {reader.pos} "
                            f"({type(err).__name__}: {err})") from None

