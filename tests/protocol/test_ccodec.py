"""The compiled codec (protocol._ccodec) against the pure-Python reference: same bytes, same
envelopes, same errors; zero-copy arrays never alias a mutable buffer; no reference leaks."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import (
    BROADCAST,
    COORDINATOR,
    DEFAULT_LIMITS,
    SCHEMA_VERSION,
    Envelope,
    Kind,
    Limits,
    MalformedMessage,
    ProtocolError,
    codec,
    decode,
    encode,
    encode_fields,
)
from tests.protocol.test_codec import bad_frames, envelopes, scalars

PURE = os.environ.get("BSEMU_PURE_CODEC") == "1"
needs_c = pytest.mark.skipif(PURE, reason="BSEMU_PURE_CODEC=1: the pure-Python codec runs alone")


def fields(env: Envelope) -> tuple[Any, ...]:
    return (env.version, env.kind, env.run_id, env.sender, env.receiver, env.iteration, env.seq, env.t_send_ns,
            env.payload)  # fmt: skip


def c_encode(env: Envelope) -> bytes | None:
    return codec._c_encode(*fields(env))


def c_decode(frame: Any, limits: Limits = DEFAULT_LIMITS) -> Envelope | None:
    return codec._c_decode(frame, limits.c_limits)


def same_value(a: Any, b: Any) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
        assert not a.flags.writeable and not b.flags.writeable
    elif isinstance(a, float):
        assert struct.pack(">d", a) == struct.pack(">d", b)  # bit for bit, NaN included
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same_value(x, y)
    else:
        assert a == b


def same_env(a: Envelope, b: Envelope) -> None:
    assert type(a) is Envelope and type(b) is Envelope
    assert a.kind is b.kind and isinstance(a.kind, Kind)
    for x, y in zip(a[1:5] + a[6:], b[1:5] + b[6:], strict=True):
        assert type(x) is type(y) and x == y
    assert list(a.payload) == list(b.payload)
    for key in a.payload:
        same_value(a.payload[key], b.payload[key])


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except ProtocolError as exc:
        return type(exc).__name__, str(exc)


def same_outcome(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "ok":
        same_env(a[1], b[1])
    else:
        assert a[1] == b[1]


# -- (a) the extension is there ------------------------------------------------------------------
def test_the_compiled_codec_is_built_and_active() -> None:
    if PURE:
        assert codec.CODEC_IMPL == "python" and codec._c_encode is None
        return
    import protocol._ccodec  # noqa: F401  (fails, not skips, when the build did not make it)

    assert codec.CODEC_IMPL == "c" and codec._c_encode is not None and codec._c_decode is not None


def test_pure_python_codec_on_request() -> None:
    code = "import protocol.codec as c; print(c.CODEC_IMPL, c._c_encode is None)"
    env = dict(os.environ, BSEMU_PURE_CODEC="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # fmt: skip
    assert out.stdout.split() == ["python", "True"]


# -- (b) same bytes and same envelopes on generated messages -------------------------------------
def _odd_layout(a: np.ndarray, how: int) -> np.ndarray:
    """The same kind of array in a non-C-contiguous or big-endian layout."""
    if how == 0 and a.ndim >= 1:
        return np.repeat(a, 2, axis=0)[::2]  # strided view
    if how == 1 and a.ndim >= 2:
        return a.T  # Fortran order
    if how == 2:
        return a.astype(a.dtype.newbyteorder(">"))
    return a


wide_arrays = st.builds(
    _odd_layout,
    hnp.arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint64, np.uint8,
                               np.int16, np.bool_]),  # fmt: skip
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    st.integers(0, 3),
)
big_ints = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, -1, -32, -33, 127, 128, 255, 256,
                     65535, 65536, 2**32 - 1, 2**32, -128, -129, -(2**15), -(2**15) - 1, -(2**31), -(2**31) - 1,
                     2**63 - 1, 2**63, 2**64 - 1, -(2**63)]))  # fmt: skip
c_scalars = st.one_of(scalars, big_ints, st.text(min_size=20, max_size=300), st.binary(min_size=200, max_size=400),
                      st.floats(width=32), st.builds(bytearray, st.binary(max_size=10)))  # fmt: skip
c_values = st.one_of(c_scalars, wide_arrays, st.lists(c_scalars, max_size=20), st.tuples(c_scalars, c_scalars),
                     st.lists(st.booleans(), min_size=16, max_size=40))  # fmt: skip
c_envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(list(Kind)),
    sender=st.one_of(st.integers(0, 2**64 - 1), st.just(COORDINATOR)),
    receiver=st.one_of(st.integers(-2, 2**64 - 1)),
    iteration=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    payload=st.dictionaries(st.text(max_size=40), c_values, max_size=20),
    run_id=st.text(max_size=128),
    t_send_ns=st.integers(0, 2**64 - 1),
    version=st.just(SCHEMA_VERSION),
)


def check_both_ways(env: Envelope) -> None:
    py_frame = codec._py_encode_fields(*fields(env))
    if not PURE:
        c_frame = c_encode(env)
        assert c_frame is not None, "the C encoder declined a payload it handles"
        assert c_frame == py_frame
    assert encode(env) == py_frame
    want = codec._py_decode(py_frame)
    if not PURE:
        got = c_decode(py_frame)
        assert got is not None, "the C decoder declined a canonical frame"
        same_env(got, want)
    same_env(decode(py_frame), want)
    same_env(decode(bytearray(py_frame)), want)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # float64 → float32 of huge values
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_same_bytes_and_envelopes_on_the_codec_strategy(env: Envelope) -> None:
    check_both_ways(env)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(c_envelopes)
def test_same_bytes_and_envelopes_on_wide_payloads(env: Envelope) -> None:
    check_both_ways(env)


def test_every_kind_and_layout_by_hand() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.random(7), rng.random(()), np.zeros(0), np.zeros((3, 0, 2)), rng.random((4, 5))[:, ::2],
              np.asfortranarray(rng.random((3, 4))), np.arange(12, dtype=np.int8).reshape(2, 2, 3),
              np.array([True, False]), np.arange(5, dtype=">f8"), rng.random((1,) * 8).astype(np.float32),
              np.array(2**64 - 1, dtype=np.uint64), rng.random(300), rng.random(20_000)]  # fmt: skip
    for kind in Kind:
        for i, arr in enumerate(arrays):
            payload = {"a": arr, "n": -(2**63), "u": 2**64 - 1, "s": "é" * i, "b": b"\x00" * (i * 30),
                       "l": [1, -1.5, "x", b"y", False], "t": (2**40, 3.0), "f": np.float64(0.25)}  # fmt: skip
            check_both_ways(Envelope(kind, i, BROADCAST, 2**63 + i, 70_000, payload, "run-é", 2**64 - 1))
    check_both_ways(Envelope(Kind.HEARTBEAT, COORDINATOR, COORDINATOR, 0, 0, {}))
    check_both_ways(Envelope(Kind.METRICS, 0, 1, 0, 0, {str(i): i for i in range(64)}))  # map16
    check_both_ways(Envelope(Kind.METRICS, 0, 1, 0, 0, {"l": list(range(65_536))}))  # array32
    check_both_ways(Envelope(Kind.METRICS, 0, 1, 0, 0, {"b": b"x" * 70_000, "s": "y" * 70_000}))  # bin32, str32


# -- (c) differential fuzz: 10 000+ hostile frames --------------------------------------------------
def _rand_obj(rng: np.random.Generator, depth: int = 0) -> Any:
    r = int(rng.integers(0, 14 if depth < 2 else 9))
    if r == 0:
        return int(rng.integers(-(2**63), 2**63 - 1)) >> int(rng.integers(0, 64))
    if r == 1:
        return float(rng.standard_normal()) if rng.random() < 0.8 else float("nan")
    if r == 2:
        return "".join(chr(int(c)) for c in rng.integers(32, 0x3000, int(rng.integers(0, 12))))
    if r == 3:
        return rng.bytes(int(rng.integers(0, 12)))
    if r == 4:
        return bool(rng.integers(2))
    if r == 5:
        return None
    if r == 6:
        return int(rng.integers(0, 2**63)) + 2**63  # uint64 above int64
    if r == 7:  # a well-formed or broken array ext
        ndim = int(rng.integers(0, 10))
        shape = rng.integers(0, 4, ndim)
        data = struct.pack(f"<B{ndim}I", ndim, *shape) + rng.bytes(int(np.prod(shape)) * int(rng.choice([4, 8])))
        return msgpack.ExtType(int(rng.choice([1, 2, 1, 2, 3, 0, 127])), data[: int(rng.integers(0, len(data) + 1))]
                               if rng.random() < 0.2 else data)  # fmt: skip
    if r == 8:
        return "x" * int(rng.choice([31, 32, 255, 256, 300]))
    if r in (9, 10):
        return [_rand_obj(rng, depth + 1) for _ in range(int(rng.integers(0, 6)))]
    keys: list[Any] = ["a", "b", "p", "é", "k" * 40, 1, b"k"]
    return {keys[int(rng.integers(len(keys)))] if rng.random() < 0.3 else f"k{j}": _rand_obj(rng, depth + 1)
            for j in range(int(rng.integers(0, 6)))}  # fmt: skip


def _rand_wire(rng: np.random.Generator) -> list[Any]:
    """A nine-field envelope, each field right most of the time, wrong or odd the rest."""
    right = [1, int(rng.integers(0, 19)), "run", int(rng.integers(-3, 9)), int(rng.integers(-3, 9)),
             int(rng.integers(0, 2**40)), int(rng.integers(0, 300)), int(rng.integers(0, 2**62)),
             {f"f{j}": _rand_obj(rng, 1) for j in range(int(rng.integers(0, 5)))}]  # fmt: skip
    wire = [v if rng.random() < 0.9 else _rand_obj(rng) for v in right]
    if rng.random() < 0.1:
        wire = wire + [_rand_obj(rng) for _ in range(int(rng.integers(1, 3)))]
    elif rng.random() < 0.05:
        wire = wire[: int(rng.integers(0, 9))]
    return wire


def _valid_frames(rng: np.random.Generator) -> list[bytes]:
    out = []
    for kind in Kind:
        for payload in ({"p": rng.random(7)}, {"d": 0.5, "slot": 3}, {"o": [1, 2], "s": "é", "b": b"\x01"},
                        {"g": rng.random((2, 3)).astype(np.float32), "i": np.arange(4)}, {}):  # fmt: skip
            out.append(encode(Envelope(kind, int(rng.integers(0, 7)), 1, 5, 300, payload, "run", 10**12)))
    return out


def _mutate(rng: np.random.Generator, frame: bytes) -> bytes:
    b = bytearray(frame)
    op = int(rng.integers(0, 6))
    if op == 0:  # truncate
        return bytes(b[: int(rng.integers(0, len(b)))])
    if op == 1:  # flip bits
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
    elif op == 2:  # replace a byte
        b[int(rng.integers(len(b)))] = int(rng.integers(256))
    elif op == 3:  # trailing bytes
        b += rng.bytes(int(rng.integers(1, 4)))
    elif op == 4:  # insert / delete a byte
        i = int(rng.integers(len(b)))
        if rng.random() < 0.5:
            del b[i]
        else:
            b.insert(i, int(rng.integers(256)))
    else:  # a non-minimal but valid encoding of the outer array / an int field
        b = bytearray(b"\xdc\x00\x09" + frame[1:] if rng.random() < 0.5 else b"\xdd\x00\x00\x00\x09" + frame[1:])
    return bytes(b)


def fuzz_frames(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    valid = _valid_frames(rng)
    single = msgpack.Packer(use_single_float=True)
    out: list[bytes] = list(valid)
    while len(out) < n:
        r = int(rng.integers(0, 10))
        if r < 3:
            out.append(msgpack.packb(_rand_wire(rng)))
        elif r == 3:
            out.append(single.pack(_rand_wire(rng)))  # float32 values (0xca)
        elif r == 4:
            out.append(msgpack.packb(_rand_obj(rng)))  # any msgpack structure
        elif r < 8:
            out.append(_mutate(rng, valid[int(rng.integers(len(valid)))]))
        elif r == 8:
            out.append(rng.bytes(int(rng.integers(0, 80))))
        else:  # a valid envelope with something odd in its payload
            wire = msgpack.unpackb(valid[int(rng.integers(len(valid)))], ext_hook=msgpack.ExtType)
            wire[8][str(rng.integers(3))] = _rand_obj(rng)
            out.append(msgpack.packb(wire))
    return out


LIMITS = [DEFAULT_LIMITS, Limits(max_message_bytes=200, max_fields=3, max_list_len=4, max_str_bytes=16, max_run_id=2)]


def test_differential_fuzz_same_envelope_or_same_error() -> None:
    frames = fuzz_frames(10_000, seed=7) + bad_frames(3000, seed=3, limits=Limits(max_message_bytes=4096))
    rng = np.random.default_rng(11)
    by_c = outcomes = 0
    for i, frame in enumerate(frames):
        limits = LIMITS[i % 7 == 0]
        known = None if i % 3 else frozenset(range(5))
        data: Any = frame if i % 5 else bytearray(frame)
        want = outcome(codec._py_decode, bytes(frame), known, limits)
        same_outcome(outcome(decode, data, known, limits), want)
        if not PURE:
            got = c_decode(data, limits)
            if got is not None:  # C accepted it: so must Python, with the same envelope
                by_c += 1
                assert want[0] in ("ok", "UnknownSender")
                same_env(got, codec._py_decode(bytes(frame), None, limits))
        outcomes += 1
        if rng.random() < 0.02:  # frames in other buffer types
            same_outcome(outcome(decode, memoryview(frame), known, limits), want)
    assert outcomes >= 13_000
    assert PURE or by_c >= 1000  # the C path really ran on a good share


def test_wrong_input_types_give_the_python_errors() -> None:
    for bad in (None, 12, "text", 1.5, [1, 2], object()):
        same_outcome(outcome(decode, bad), outcome(codec._py_decode, bad))
    same_outcome(outcome(decode, memoryview(b"\x00" * 8)[::2]), outcome(codec._py_decode, memoryview(b"\x00" * 8)[::2]))


# -- (d) decoded arrays never alias a mutable buffer --------------------------------------------------
@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_arrays_decoded_from_a_mutable_buffer_are_copies(wrap: Any) -> None:
    p = np.arange(7, dtype=np.float32)
    buf = bytearray(encode(Envelope(Kind.POWER_VECTOR, 0, 1, 0, 0, {"p": p, "q": np.ones((2, 2))})))
    env = decode(wrap(buf))
    assert not env.payload["p"].flags.writeable
    buf[:] = bytes(len(buf))  # overwrite the received buffer
    np.testing.assert_array_equal(env.payload["p"], p)
    np.testing.assert_array_equal(env.payload["q"], np.ones((2, 2), np.float32))


def test_arrays_decoded_from_bytes_are_read_only_views() -> None:
    frame = encode(Envelope(Kind.POWER_VECTOR, 0, 1, 0, 0, {"p": np.arange(7.0)}))
    arr = decode(frame).payload["p"]
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1.0


# -- (e) no reference leaks ----------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_two_hundred_thousand_round_trips_do_not_grow_memory() -> None:
    p = np.random.default_rng(0).random(7)
    rich = {"p": p, "l": [1, "x", 2.5], "s": "é", "b": b"xy", "g": np.ones((2, 3)), "t": np.arange(3)[::2]}
    frame = encode(Envelope(Kind.POWER_VECTOR, 1, 2, 3, 4, {"p": p}, "run", 5))
    fallback = msgpack.packb([1, 1, "run", 1, 2, 3, 4, 5, {"p": None}])  # C declines, Python rejects

    def loop(n: int) -> None:
        for i in range(n):
            env = decode(encode_fields(1, Kind.POWER_VECTOR, "run", 1, 2, i, i, i, {"p": p}))
            assert env.seq == i
            if i % 8 == 0:
                decode(bytearray(encode_fields(1, Kind.METRICS, "run", 1, 2, i, i, i, rich)))
                encode_fields(1, Kind.METRICS, "run", 1, 2, i, i, i, {"x": np.float32(i)})  # C declines
                with pytest.raises(MalformedMessage):
                    decode(fallback)
                with pytest.raises(ProtocolError):
                    decode(frame, known_senders=frozenset())

    loop(20_000)  # warm: caches, allocator arenas
    refs = sys.getrefcount(frame), sys.getrefcount(p)
    before = _rss_bytes()
    loop(200_000)
    grown = _rss_bytes() - before
    assert (sys.getrefcount(frame), sys.getrefcount(p)) == refs
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 200 000 round trips"


# -- (f) what the C encoder does not handle goes to the Python encoder -----------------------------------
@pytest.mark.parametrize(
    "value",
    [np.float32(1.5), np.int64(-3), np.bool_(True), {"nested": 1}, [[1]], None, [None], 2**64, -(2**63) - 1,
     np.zeros((1,) * 9), np.zeros(2, complex), np.array(["a"]), {1, 2}, object(), "\ud800", ["\udfff"],
     np.ma.masked_array([1.0]), memoryview(b"ab"), np.zeros(3)[None].T],  # fmt: skip
)
def test_encode_falls_back_to_the_python_encoder(value: Any) -> None:
    args = (1, Kind.METRICS, "run", 0, 1, 2, 3, 4, {"x": value})
    want = outcome(codec._py_encode_fields, *args)
    assert outcome(encode_fields, *args) == want
    if not PURE and not (isinstance(value, np.ndarray) and type(value) is np.ndarray and value.ndim <= 8
                         and value.dtype.kind in "fiub"):  # fmt: skip
        assert codec._c_encode(*args) is None


@pytest.mark.parametrize(
    "args",
    [(True, 1, "r", 0, 1, 2, 3, 4, {}), (1, 1, "r", False, 1, 2, 3, 4, {}), (1, 1.0, "r", 0, 1, 2, 3, 4, {}),
     (1, 1, b"r", 0, 1, 2, 3, 4, {}), (1, 1, None, 0, 1, 2, 3, 4, {}), (1, 1, "r", 0, 1, 2, 3, 2**64, {}),
     (1, 1, "r", 0, 1, 2, 3, 4, {1: 2}), (1, 1, "r", 0, 1, 2, 3, 4, {b"k": 2}), (1, 1, "r", 0, 1, 2, 3, 4, [1]),
     (1, 1, "\udc80", 0, 1, 2, 3, 4, {}), (1, 1, "r", 0, 1, 2, 3, 4, None)],  # fmt: skip
)
def test_odd_header_fields_fall_back(args: tuple[Any, ...]) -> None:
    want = outcome(codec._py_encode_fields, *args)
    assert outcome(encode_fields, *args) == want
    if not PURE:
        assert codec._c_encode(*args) is None


def test_message_too_large_on_the_c_path() -> None:
    small = Limits(max_message_bytes=100)
    args = (1, Kind.PARAMETERS, "r", 0, 1, 2, 3, 4, {"theta": np.zeros(30)})
    assert outcome(encode_fields, *args, small) == outcome(codec._py_encode_fields, *args, small)
    assert outcome(encode_fields, *args, small)[0] == "MessageTooLarge"


def test_float_values_keep_their_bits() -> None:
    for x in (0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308):
        env = Envelope(Kind.METRICS, 0, 1, 0, 0, {"x": x, "l": [x]})
        check_both_ways(env)
