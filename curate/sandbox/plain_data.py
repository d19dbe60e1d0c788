"""Plain data across the sandbox's process boundary: what the test process and the candidate's process
may say to each other. Standard library only (the sandbox's runner loads this file by path).

Plain data is ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes`` and ``list``,
``tuple``, ``dict``, ``set``, ``frozenset`` of plain data. The encoding is a tagged binary format,
never pickle: decoding builds only those built-in types, so no code of the sender ever runs in the
receiver (no ``__eq__``, ``__hash__`` or ``__reduce__`` of its choosing).

Format (little endian): one tag byte, then

====  ==============================  =========================================
tag   type                            payload
====  ==============================  =========================================
N/T/F None / True / False            -
i     int                             u32 byte count + signed two's complement
f     float                           8-byte IEEE double
c     complex                         two 8-byte doubles
s/b   str (UTF-8, surrogates kept)    u32 byte count + bytes
      / bytes
l/t   list / tuple                    u32 item count + items
S/z   set / frozenset                 u32 item count + items
d     dict                            u32 pair count + key, value, key, value...
====  ==============================  =========================================

Bounds: a message is at most ``MAX_MESSAGE_BYTES`` and nests at most ``MAX_DEPTH`` containers deep
(so cyclic values are refused). The encoder is lenient with subclasses of the plain types (an
``IntEnum`` travels as its ``int``, a ``Counter`` as a ``dict``, a named tuple as a ``tuple``); the
decoder is strict and is the only side that matters, since the candidate's process may send anything.

Example:
    >>> decode(encode({"a": [1, 2.5, None], (1, "x"): {b"k"}, "z": frozenset({-(2**70)})}))
    {'a': [1, 2.5, None], (1, 'x'): {b'k'}, 'z': frozenset({-1180591620717411303424})}
    >>> try:
    ...     encode([1, object()])
    ... except NotPlainData as e:
    ...     print(e)
    object is not plain data
"""

import struct

MAX_DEPTH = 100
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")


class NotPlainData(TypeError):
    """The value (or something inside it) is not plain data, or nests too deep."""


class PlainDataError(ValueError):
    """The bytes are not a well-formed plain-data message."""


def encode(value) -> bytes:
    """``value`` as bytes; raises :class:`NotPlainData` for anything that is not plain data."""
    out: list[bytes] = []
    _encode(value, out, 0)
    data = b"".join(out)
    if len(data) > MAX_MESSAGE_BYTES:
        raise NotPlainData(f"value too large ({len(data)} bytes > {MAX_MESSAGE_BYTES})")
    return data


def _encode(v, out: list, depth: int) -> None:
    t = type(v)
    if v is None:
        out.append(b"N")
    elif v is True or v is False:
        out.append(b"T" if v else b"F")
    elif t is int or isinstance(v, int):  # bool is final: True and False are handled above
        n = int(v)
        raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        out += (b"i", _U32.pack(len(raw)), raw)
    elif t is float or isinstance(v, float):
        out += (b"f", _F64.pack(float(v)))
    elif t is str or isinstance(v, str):
        raw = str.__str__(v).encode("utf-8", "surrogatepass")
        out += (b"s", _U32.pack(len(raw)), raw)
    elif t is bytes or isinstance(v, bytes):
        raw = bytes(v)
        out += (b"b", _U32.pack(len(raw)), raw)
    elif isinstance(v, complex):
        out += (b"c", _C128.pack(v.real, v.imag))
    else:
        _encode_container(v, out, depth)


def _encode_container(v, out: list, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH} levels (or cyclic)")
    if isinstance(v, dict):
        items = list(dict.items(v))
        out += (b"d", _U32.pack(len(items)))
        for key, val in items:
            _encode(key, out, depth + 1)
            _encode(val, out, depth + 1)
        return
    for cls, tag in ((list, b"l"), (tuple, b"t"), (frozenset, b"z"), (set, b"S")):
        if isinstance(v, cls):
            items = list(cls.__iter__(v))
            out += (tag, _U32.pack(len(items)))
            for item in items:
                _encode(item, out, depth + 1)
            return
    raise NotPlainData(f"{type(v).__name__} is not plain data")


def decode(data: bytes):
    """The value ``data`` encodes; raises :class:`PlainDataError` for anything malformed."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
        raise PlainDataError("not a bounded byte string")
    try:
        value, end = _decode(memoryview(data), 0, 0)
    except (struct.error, IndexError, UnicodeDecodeError, TypeError, RecursionError) as e:
        raise PlainDataError(f"malformed plain data: {type(e).__name__}: {e}") from None
    if end != len(data):
        raise PlainDataError(f"{len(data) - end} trailing bytes")
    return value


_ATOMS = {ord("N"): None, ord("T"): True, ord("F"): False}


def _length(buf, pos: int) -> int:
    n = _U32.unpack_from(buf, pos)[0]
    if n > len(buf) - pos - 4:  # every item takes at least one byte: no count beyond the message
        raise PlainDataError("length beyond the end of the message")
    return n


def _decode(buf, pos: int, depth: int):
    tag = buf[pos]
    pos += 1
    if tag in _ATOMS:
        return _ATOMS[tag], pos
    if tag == 0x69:  # i
        n = _length(buf, pos)
        return int.from_bytes(buf[pos + 4 : pos + 4 + n], "little", signed=True), pos + 4 + n
    if tag == 0x66:  # f
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag == 0x63:  # c
        re_, im = _C128.unpack_from(buf, pos)
        return complex(re_, im), pos + 16
    if tag in (0x73, 0x62):  # s, b
        n = _length(buf, pos)
        raw = bytes(buf[pos + 4 : pos + 4 + n])
        return (raw.decode("utf-8", "surrogatepass") if tag == 0x73 else raw), pos + 4 + n
    if depth >= MAX_DEPTH:
        raise PlainDataError(f"nested deeper than {MAX_DEPTH} levels")
    if tag in (0x6C, 0x74, 0x53, 0x7A):  # l, t, S, z
        n = _length(buf, pos)
        pos += 4
        items = []
        for _ in range(n):
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
        kind = {0x6C: list, 0x74: tuple, 0x53: set, 0x7A: frozenset}[tag]
        return (items if kind is list else kind(items)), pos
    if tag == 0x64:  # d
        n = _length(buf, pos)
        pos += 4
        out = {}
        for _ in range(n):
            key, pos = _decode(buf, pos, depth + 1)
            val, pos = _decode(buf, pos, depth + 1)
            out[key] = val
        return out, pos
    raise PlainDataError(f"unknown tag {tag!r}")
