"""msgpack codec of :class:`~protocol.envelope.Envelope` with validation and size limits.

Wire format (schema version 1), one msgpack array::

    [version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload_map, ...]

Elements after the ninth are ignored (forward compatibility: a later minor revision may append
fields). ``payload_map`` is a map str → value where a value is nil-free scalar (bool, int, float,
str, bytes), a flat list of such scalars, or an array carried as a msgpack *ext* value:

* ext code 1: float32 array, ext code 2: int64 array;
* ext data: ``ndim`` (uint8, ≤ 8), ``shape`` (``ndim`` × uint32, little endian), then the
  elements as raw little-endian bytes (C order).

Any floating numpy array is sent as float32 and any integer/bool array as int64. Decoded arrays are
read-only views over the received bytes (zero copy); ``.copy()`` them to write.

:func:`decode` checks the frame length before unpacking, passes every size cap to msgpack's
unpacker (so no header can make it allocate more than the limits allow) and validates every
field; it raises only members of the :class:`~protocol.errors.ProtocolError` family.

Two implementations give the same bytes, envelopes and errors: the compiled fast path
``protocol._ccodec`` (built by ``pip install``; it handles the common types and the canonical frames
and answers None for anything else) and the pure-Python reference ``_py_encode_fields`` /
``_py_decode``, which takes over wherever the C code declines and decides every error.
:data:`CODEC_IMPL` says which is active: ``"c"`` when the extension imports and the environment
variable ``BSEMU_PURE_CODEC`` is not ``"1"`` at import, else ``"python"``.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .envelope import BROADCAST, COORDINATOR, SCHEMA_VERSION, Envelope, Kind
from .errors import (
    ConfigError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownKind,
    UnknownSender,
    UnsupportedVersion,
)

EXT_F32: int = 1
EXT_I64: int = 2
MAX_NDIM: int = 8
_WIRE_LEN = 9
_SHAPE = tuple(struct.Struct(f"<B{n}I") for n in range(MAX_NDIM + 1))
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")
_SCALAR_TYPES = frozenset({int, float, str, bytes, bool})
_KINDS: tuple[Kind | None, ...] = tuple(Kind(i) if i in Kind._value2member_map_ else None for i in range(max(Kind) + 1))
_new_envelope = _new_ext = tuple.__new__
_unpackb = msgpack.unpackb
_PACKERS = threading.local()  # one reusable msgpack.Packer per thread (a Packer is not thread-safe)


def _unpack_kwargs(limits: Limits) -> dict[str, Any]:
    cap = limits.max_message_bytes
    # msgpack ≥ 1.0 defaults are kept: raw=False, use_list=True, strict_map_key=True.
    return dict(
        ext_hook=_ext_hook,
        max_bin_len=min(cap, limits.max_str_bytes),
        max_str_len=min(cap, limits.max_str_bytes),
        max_array_len=max(_WIRE_LEN + 16, limits.max_list_len),
        max_map_len=limits.max_fields,
        max_ext_len=cap,
    )


@dataclass(frozen=True)
class Limits:
    """Size limits enforced by :func:`decode` (and by :func:`encode` for the frame size).

    Attributes:
        max_message_bytes: largest accepted frame, bytes (default 64 MiB: a few million float32
            parameters).
        max_fields: most payload fields per message.
        max_list_len: most elements of a payload list.
        max_str_bytes: longest str or bytes value in a payload, bytes.
        max_run_id: longest run id, characters.
    """

    max_message_bytes: int = 64 * 1024 * 1024
    max_fields: int = 64
    max_list_len: int = 65536
    max_str_bytes: int = 1024 * 1024
    max_run_id: int = 128
    unpack_kwargs: dict[str, Any] = field(init=False, repr=False, compare=False, hash=False)
    c_limits: tuple[int, int, int, int, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_fields", "max_list_len", "max_str_bytes", "max_run_id"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"Limits.{name}={v!r} must be an int ≥ 1")
        object.__setattr__(self, "unpack_kwargs", _unpack_kwargs(self))  # computed once, not per frame
        c_limits = (self.max_message_bytes, self.max_str_bytes, self.max_list_len, self.max_fields, self.max_run_id)
        object.__setattr__(self, "c_limits", c_limits)  # the C decoder's argument


def _ext_hook(code: int, data: bytes) -> np.ndarray:
    """Turn an ext value into a read-only numpy array (validating ndim, shape and length)."""
    if code == EXT_F32:
        dtype = _F32
    elif code == EXT_I64:
        dtype = _I64
    else:
        raise MalformedMessage(f"unknown ext type {code}")
    n = len(data)
    if n < 1 or data[0] > MAX_NDIM:
        raise MalformedMessage("bad array header")
    ndim = data[0]
    hdr = 1 + 4 * ndim
    if n < hdr:
        raise MalformedMessage("truncated array shape")
    shape = _SHAPE[ndim].unpack_from(data)[1:]
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != n - hdr:
        raise MalformedMessage(f"array shape {shape} does not match {n - hdr} data bytes")
    arr = np.frombuffer(data, dtype, count, hdr)
    return arr if ndim == 1 else arr.reshape(shape)


DEFAULT_LIMITS = Limits()


_EXT_OF: dict[np.dtype, tuple[int, np.dtype]] = {}  # dtype → (ext code, wire dtype); filled on first use
_HEADERS: dict[tuple[int, ...], bytes] = {}  # shape → packed (ndim, shape) header; bounded below


def _ext_of(dtype: np.dtype) -> tuple[int, np.dtype]:
    kind = dtype.kind
    if kind == "f":
        got = EXT_F32, _F32
    elif kind in "iub":
        got = EXT_I64, _I64
    else:
        raise MalformedMessage(f"cannot encode array of dtype {dtype}")
    _EXT_OF[dtype] = got
    return got


def _header(shape: tuple[int, ...]) -> bytes:
    ndim = len(shape)
    if ndim > MAX_NDIM:
        raise MalformedMessage(f"array has {ndim} > {MAX_NDIM} dimensions")
    if len(_HEADERS) >= 4096:  # many distinct shapes: start over rather than grow without bound
        _HEADERS.clear()
    hdr = _HEADERS[shape] = _SHAPE[ndim].pack(ndim, *shape)
    return hdr


def _pack_default(obj: Any) -> Any:
    """msgpack ``default`` hook: numpy arrays → ext, numpy scalars → Python scalars."""
    if isinstance(obj, np.ndarray):
        code, wire = _EXT_OF.get(obj.dtype) or _ext_of(obj.dtype)
        hdr = _HEADERS.get(obj.shape) or _header(obj.shape)
        # tuple.__new__ skips ExtType's Python-level argument checks (code and data are right by construction)
        return _new_ext(msgpack.ExtType, (code, hdr + obj.astype(wire, copy=False).tobytes()))
    if isinstance(obj, np.generic):
        return obj.item()
    raise MalformedMessage(f"cannot encode payload value of type {type(obj).__name__}")


def encode(env: Envelope, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Serialize an envelope to one frame (bytes).

    Raises:
        MalformedMessage: a payload value of an unsupported type.
        MessageTooLarge: the frame exceeds ``limits.max_message_bytes``.
    """
    return encode_fields(
        env.version, env.kind, env.run_id, env.sender, env.receiver,
        env.iteration, env.seq, env.t_send_ns, env.payload, limits,
    )  # fmt: skip


def encode_fields(
    version: int, kind: int, run_id: str, sender: int, receiver: int, iteration: int,
    seq: int, t_send_ns: int, payload: dict[str, Any], limits: Limits = DEFAULT_LIMITS,
) -> bytes:  # fmt: skip
    """Like :func:`encode` from the fields themselves (no Envelope built; transports' hot path)."""
    if _c_encode is not None:
        frame = _c_encode(version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload)
        if frame is not None:
            if len(frame) > limits.max_message_bytes:
                raise MessageTooLarge(f"frame of {len(frame)} B exceeds {limits.max_message_bytes} B")
            return frame
    return _py_encode_fields(version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload, limits)


def _py_encode_fields(
    version: int, kind: int, run_id: str, sender: int, receiver: int, iteration: int,
    seq: int, t_send_ns: int, payload: dict[str, Any], limits: Limits = DEFAULT_LIMITS,
) -> bytes:  # fmt: skip
    """:func:`encode_fields` in pure Python (msgpack's Packer): the reference and the fallback."""
    packer = _PACKERS.__dict__.get("p")
    if packer is None:
        packer = _PACKERS.p = msgpack.Packer(default=_pack_default)
    try:  # Kind is an IntEnum: msgpack packs it as a plain int
        frame = packer.pack([version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload])
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises TypeError/ValueError/OverflowError
        raise MalformedMessage(f"cannot encode envelope: {exc}") from exc
    if len(frame) > limits.max_message_bytes:
        raise MessageTooLarge(f"frame of {len(frame)} B exceeds {limits.max_message_bytes} B")
    return frame


def frame_size(env: Envelope) -> int:
    """Bytes this envelope occupies on the wire, ``len(encode(env))``, counted from msgpack's size
    rules without encoding (in-process logging of 10^5-float gradients would otherwise convert and
    pack every one of them only to count it). Raises MalformedMessage where encode would."""
    head = (_int_size(env.version) + _int_size(env.kind) + _str_size(env.run_id) + _int_size(env.sender)
            + _int_size(env.receiver) + _int_size(env.iteration) + _int_size(env.seq) + _int_size(env.t_send_ns))
    payload = env.payload
    body = _container_size(len(payload)) + sum(_value_size(k) + _value_size(v) for k, v in payload.items())
    return 1 + head + body                                  # fixarray of the nine fields


def _int_size(v: int) -> int:
    """msgpack int: positive -> (fix)uint, negative -> (fix)int, smallest that holds it."""
    if v >= 0:
        return 1 if v < 128 else 2 if v < 256 else 3 if v < 65536 else 5 if v < 2**32 else 9
    return 1 if v >= -32 else 2 if v >= -128 else 3 if v >= -32768 else 5 if v >= -(2**31) else 9


def _len_prefix(n: int, fix: int) -> int:
    """Header bytes of a str/array/map of n items (fix: the largest n of its fix form, 0 if none)."""
    return 1 if n <= fix else 2 if n < 256 and fix != 15 else 3 if n < 65536 else 5


def _str_size(v: str) -> int:
    try:
        n = len(v) if v.isascii() else len(v.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise MalformedMessage(f"cannot encode envelope: {exc}") from exc
    return n + _len_prefix(n, 31)


def _container_size(n: int) -> int:
    return _len_prefix(n, 15)


def _ext_size(n: int) -> int:
    if n in (1, 2, 4, 8, 16):
        return 2 + n
    return n + (3 if n < 256 else 4 if n < 65536 else 6)


def _value_size(v: Any) -> int:
    t = type(v)
    if t is bool or v is None:
        return 1
    if t is float:
        return 9
    if t is str:
        return _str_size(v)
    if t is bytes or t is bytearray:
        n = len(v)
        return n + (2 if n < 256 else 3 if n < 65536 else 5)
    if t is list or t is tuple:
        return _container_size(len(v)) + sum(_value_size(x) for x in v)
    if t is np.ndarray:
        _code, wire = _EXT_OF.get(v.dtype) or _ext_of(v.dtype)
        if v.ndim > MAX_NDIM:
            raise MalformedMessage(f"array has {v.ndim} > {MAX_NDIM} dimensions")
        return _ext_size(1 + 4 * v.ndim + v.size * wire.itemsize)
    if isinstance(v, int):                                   # int, IntEnum
        if not -(2**63) <= v < 2**64:
            raise MalformedMessage(f"cannot encode envelope: int {v} out of msgpack range")
        return _int_size(int(v))
    if isinstance(v, np.generic):
        return _value_size(v.item())
    if isinstance(v, dict):
        return _container_size(len(v)) + sum(_value_size(a) + _value_size(b) for a, b in v.items())
    return len(encode_fields(SCHEMA_VERSION, 0, "", 0, 0, 0, 0, 0, {"": v})) - 11   # anything else: ask msgpack


def _check_payload(payload: dict[Any, Any], limits: Limits) -> None:
    """Every key a str, every value an array (from the ext hook), a scalar or a list of scalars."""
    for key, value in payload.items():
        if type(key) is not str:
            raise MalformedMessage("payload key is not a str")
        t = type(value)
        if t is np.ndarray or t in _SCALAR_TYPES:
            continue
        if t is list:
            if len(value) > limits.max_list_len:
                raise MessageTooLarge(f"payload list {key!r} has {len(value)} > {limits.max_list_len} items")
            for item in value:
                if type(item) not in _SCALAR_TYPES:
                    raise MalformedMessage(f"payload list {key!r} holds a {type(item).__name__}")
            continue
        raise MalformedMessage(f"payload field {key!r} has type {t.__name__}")


def decode(
    data: bytes | bytearray | memoryview,
    known_senders: Container[int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """Parse and validate one frame.

    Args:
        data: the frame.
        known_senders: if given, a sender id not in it raises :class:`UnknownSender`.
        limits: size limits (checked before unpacking, and passed to the unpacker).

    Raises:
        MessageTooLarge, MalformedMessage, UnsupportedVersion, UnknownKind, UnknownSender
        (all :class:`ProtocolError`); never anything else.
    """
    if _c_decode is not None:
        env = _c_decode(data, limits.c_limits)  # None: not a canonical valid frame, Python decides
        if env is not None:
            if known_senders is not None and env.sender not in known_senders:
                raise UnknownSender(f"unknown sender {env.sender}")
            return env
    return _py_decode(data, known_senders, limits)


def _py_decode(
    data: bytes | bytearray | memoryview,
    known_senders: Container[int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """:func:`decode` in pure Python (msgpack's unpacker): the reference and the fallback.

    Args:
        data: the frame.
        known_senders: if given, a sender id not in it raises :class:`UnknownSender`.
        limits: size limits (checked before unpacking, and passed to the unpacker).

    Raises:
        MessageTooLarge, MalformedMessage, UnsupportedVersion, UnknownKind, UnknownSender
        (all :class:`ProtocolError`); never anything else.
    """
    try:
        n = len(data)
    except TypeError as exc:
        raise MalformedMessage(f"frame of type {type(data).__name__}") from exc
    if n > limits.max_message_bytes:
        raise MessageTooLarge(f"frame of {n} B exceeds {limits.max_message_bytes} B")
    try:
        wire = _unpackb(data, **limits.unpack_kwargs)
    except ProtocolError:
        raise
    except Exception as exc:  # ExtraData, FormatError, StackError, ValueError, UnicodeDecodeError…
        if "exceeds max" in str(exc):
            raise MessageTooLarge(f"field too large: {exc}") from exc
        raise MalformedMessage(f"not a msgpack envelope: {type(exc).__name__}: {exc}") from exc
    if type(wire) is not list or not wire:
        raise MalformedMessage("frame is not a msgpack array")
    version = wire[0]
    if type(version) is not int or version != SCHEMA_VERSION:  # type first: an array's != is not a bool
        if type(version) is not int:
            raise MalformedMessage("version is not an int")
        raise UnsupportedVersion(f"schema version {version} (supported: {SCHEMA_VERSION})")
    if len(wire) < _WIRE_LEN:
        raise MalformedMessage(f"envelope has {len(wire)} < {_WIRE_LEN} fields")
    _, kind, run_id, sender, receiver, iteration, seq, t_ns, payload = wire[:_WIRE_LEN]
    if type(kind) is not int:
        raise MalformedMessage("kind is not an int")
    k = _KINDS[kind] if 0 <= kind < len(_KINDS) else None
    if k is None:
        raise UnknownKind(f"unknown message kind {kind}")
    if type(run_id) is not str:
        raise MalformedMessage("run id is not a str")
    if len(run_id) > limits.max_run_id:
        raise MessageTooLarge(f"run id of {len(run_id)} > {limits.max_run_id} characters")
    if (
        type(sender) is not int or type(receiver) is not int or type(iteration) is not int
        or type(seq) is not int or type(t_ns) is not int
        or sender < COORDINATOR or sender == BROADCAST or receiver < COORDINATOR
        or iteration < 0 or seq < 0 or t_ns < 0
    ):  # fmt: skip
        raise MalformedMessage(f"bad sender {sender!r}, receiver, iteration, seq or t_send_ns")
    if known_senders is not None and sender not in known_senders:
        raise UnknownSender(f"unknown sender {sender}")
    if type(payload) is not dict:
        raise MalformedMessage("payload is not a map")
    if payload:  # control messages carry none
        _check_payload(payload, limits)
    return _new_envelope(Envelope, (k, sender, receiver, iteration, seq, payload, run_id, t_ns, version))


def _load_c_codec() -> tuple[Any, Any, str]:
    """The compiled fast path, set up with this module's objects; (None, None, "python") without it."""
    if os.environ.get("BSEMU_PURE_CODEC") == "1":
        return None, None, "python"
    try:
        from . import _ccodec
    except ImportError:
        return None, None, "python"
    _ccodec.setup(Envelope, _KINDS, np.ndarray, np.frombuffer, _F32, _I64)
    return _ccodec.encode, _ccodec.decode, "c"


_c_encode, _c_decode, CODEC_IMPL = _load_c_codec()
"""``"c"`` when the compiled codec is active, ``"python"`` when the pure-Python one runs alone."""
