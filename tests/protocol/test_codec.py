"""Codec: round trips of every kind (property-based) and rejection of malformed frames."""

from __future__ import annotations

import math

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
    ConfigError,
    Envelope,
    Kind,
    Limits,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownKind,
    UnknownSender,
    UnsupportedVersion,
    decode,
    encode,
    frame_size,
)
from protocol.codec import EXT_F32, EXT_I64

U63 = st.integers(0, 2**63 - 1)
scalars = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.booleans(),
)
float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
)
int_arrays = hnp.arrays(
    dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
)
values = st.one_of(scalars, float_arrays, int_arrays, st.lists(scalars, max_size=5))
payloads = st.dictionaries(st.text(max_size=12), values, max_size=6)
node_ids = st.one_of(st.integers(0, 10_000), st.just(COORDINATOR))
envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(list(Kind)),
    sender=node_ids,
    receiver=st.one_of(node_ids, st.just(BROADCAST)),
    iteration=U63,
    seq=U63,
    payload=payloads,
    run_id=st.text(max_size=40),
    t_send_ns=U63,
    version=st.just(SCHEMA_VERSION),
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        want = a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64)
        assert b.dtype == want.dtype and b.shape == want.shape
        np.testing.assert_array_equal(b, want)
        return True
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_round_trip_every_kind(env: Envelope) -> None:
    frame = encode(env)
    assert isinstance(frame, bytes) and frame_size(env) == len(frame)
    out = decode(frame)
    assert out.kind is env.kind and isinstance(out.kind, Kind)
    assert out[:5] == env[:5] and out[6:] == env[6:]
    assert set(out.payload) == set(env.payload)
    for key, value in env.payload.items():
        assert _same(value, out.payload[key]), key


def test_every_kind_round_trips_with_a_power_vector() -> None:
    p = np.linspace(0, 1, 21).reshape(7, 3)
    for kind in Kind:
        out = decode(encode(Envelope(kind, 3, 4, 5, 6, {"p": p, "note": "x"}, "run", 123)))
        assert out.kind is kind and out.payload["note"] == "x"
        np.testing.assert_array_equal(out.payload["p"], p.astype(np.float32))
        assert not out.payload["p"].flags.writeable  # zero-copy view of the frame


def test_float_arrays_travel_as_float32_bytes() -> None:
    p = np.random.default_rng(0).random(1000)
    frame = encode(Envelope(Kind.PARAMETERS, 0, COORDINATOR, 0, 0, {"theta": p}))
    assert 4000 <= len(frame) < 4000 + 60


def test_unknown_extra_fields_are_ignored() -> None:
    wire = [SCHEMA_VERSION, int(Kind.SCALAR_D), "r", 1, 2, 3, 4, 5, {"d": 0.5}, "future", {"x": 1}]
    env = decode(msgpack.packb(wire))
    assert env.kind is Kind.SCALAR_D and env.payload == {"d": 0.5} and env.seq == 4


def _wire(**over: object) -> list[object]:
    base: dict[str, object] = dict(
        version=SCHEMA_VERSION, kind=int(Kind.POWER_VECTOR), run_id="r", sender=1, receiver=2,
        iteration=3, seq=4, t=5, payload={"p": 1.0},
    )  # fmt: skip
    base.update(over)
    return list(base.values())


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (_wire(version=2), UnsupportedVersion),
        (_wire(version=0), UnsupportedVersion),
        ([99, "anything"], UnsupportedVersion),
        (_wire(version="1"), MalformedMessage),
        (_wire(kind=0), UnknownKind),
        (_wire(kind=999), UnknownKind),
        (_wire(kind=-3), UnknownKind),
        (_wire(kind="POWER_VECTOR"), MalformedMessage),
        (_wire(sender=BROADCAST), MalformedMessage),
        (_wire(sender=-7), MalformedMessage),
        (_wire(sender=True), MalformedMessage),
        (_wire(receiver=1.5), MalformedMessage),
        (_wire(iteration=-1), MalformedMessage),
        (_wire(seq=None), MalformedMessage),
        (_wire(t="now"), MalformedMessage),
        (_wire(run_id=7), MalformedMessage),
        (_wire(run_id="x" * 200), MessageTooLarge),
        (_wire(payload=[1, 2]), MalformedMessage),
        (_wire(payload={"a": {"nested": 1}}), MalformedMessage),
        (_wire(payload={"a": [[1]]}), MalformedMessage),
        (_wire(payload={"a": None}), MalformedMessage),
        (_wire(payload={b"bytes-key": 1}), MalformedMessage),
        (_wire()[:8], MalformedMessage),
        ({"version": 1}, MalformedMessage),
        (7, MalformedMessage),
        ([], MalformedMessage),
    ],
)
def test_bad_fields_raise_typed_errors(wire: object, error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        decode(msgpack.packb(wire))


def _ext(code: int, data: bytes) -> bytes:
    return msgpack.packb(_wire(payload={"p": msgpack.ExtType(code, data)}))


@pytest.mark.parametrize(
    "frame",
    [
        _ext(EXT_F32, b""),  # no header
        _ext(EXT_F32, bytes([9]) + bytes(36)),  # ndim > 8
        _ext(EXT_F32, bytes([2, 3, 0, 0, 0])),  # truncated shape
        _ext(EXT_F32, bytes([1, 3, 0, 0, 0]) + bytes(8)),  # 3 floats need 12 bytes
        _ext(EXT_I64, bytes([1, 2, 0, 0, 0]) + bytes(12)),  # 2 int64 need 16 bytes
        _ext(EXT_F32, bytes([1, 255, 255, 255, 255]) + bytes(4)),  # huge shape claim
        _ext(42, b"whatever"),  # unknown ext type
        msgpack.packb(_wire(sender=msgpack.ExtType(EXT_F32, bytes([0]) + bytes(4)))),  # array as sender
    ],
)
def test_bad_arrays_are_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(frame)


def test_size_limits_are_enforced_before_unpacking() -> None:
    small = Limits(max_message_bytes=1024, max_fields=4, max_list_len=8, max_str_bytes=64)
    with pytest.raises(MessageTooLarge):
        decode(b"\x00" * 1025, limits=small)
    with pytest.raises(MessageTooLarge):
        decode(msgpack.packb(_wire(payload={"s": "x" * 100})), limits=small)
    head = msgpack.packb(_wire(payload={"b": b""}))[:-2]
    for claim in (b"\xc6\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff"):  # bin32 / str32 of ~2-4 GiB
        for lim in (small, DEFAULT_LIMITS):  # refused (incomplete) without allocating the claim
            with pytest.raises((MalformedMessage, MessageTooLarge)):
                decode(head + claim + b"xx", limits=lim)
    with pytest.raises(MessageTooLarge):
        decode(msgpack.packb(_wire(payload={str(i): i for i in range(5)})), limits=small)
    with pytest.raises(MessageTooLarge):
        decode(msgpack.packb(_wire(payload={"l": list(range(9))})), limits=small)
    with pytest.raises(MessageTooLarge):
        encode(Envelope(Kind.PARAMETERS, 0, 1, 0, 0, {"theta": np.zeros(300)}), limits=small)


def test_limits_are_validated() -> None:
    for bad in ({"max_message_bytes": 0}, {"max_fields": -1}, {"max_run_id": 1.5}):
        with pytest.raises(ConfigError):
            Limits(**bad)  # type: ignore[arg-type]


def test_unknown_sender() -> None:
    frame = encode(Envelope(Kind.SCALAR_D, 9, BROADCAST, 0, 0, {"d": 1.0}))
    assert decode(frame, known_senders={9}).sender == 9
    with pytest.raises(UnknownSender):
        decode(frame, known_senders=frozenset(range(7)))


def test_encode_rejects_unsupported_payload_types() -> None:
    for bad in ({1, 2}, object(), np.array(["a"]), np.zeros(2, dtype=complex), {"nested": 1}):
        with pytest.raises(ProtocolError):
            decode(encode(Envelope(Kind.METRICS, 0, 1, 0, 0, {"x": bad})))  # type: ignore[dict-item]


def bad_frames(n: int, seed: int, limits: Limits) -> list[bytes]:
    """``n`` frames that must all be rejected: random bytes, truncations, oversize, wrong types,
    wrong versions, unknown kinds and senders, broken arrays (senders 0..6 are the known ones)."""
    rng = np.random.default_rng(seed)
    good = [
        encode(Envelope(k, int(rng.integers(7)), 1, 5, 6, {"p": rng.random(7), "i": 3}, "run", 10**12)) for k in Kind
    ]
    junk: list[object] = ["x", 1.5, None, -5, [1], {"a": 1}, True, b"b", -(2**63)]
    out: list[bytes] = []
    for i in range(n):
        case = i % 8
        g = good[int(rng.integers(len(good)))]
        if case == 0:  # random bytes
            out.append(rng.bytes(int(rng.integers(0, 300))))
        elif case == 1:  # truncated good frame
            out.append(g[: int(rng.integers(0, len(g)))])
        elif case == 2:  # oversized (between the limit and twice the limit)
            size = int(rng.integers(limits.max_message_bytes + 1, 2 * limits.max_message_bytes))
            out.append(g + rng.bytes(size - len(g)))
        elif case == 3:  # a header field of the wrong type or range
            w = msgpack.unpackb(g, ext_hook=lambda c, d: msgpack.ExtType(c, d))
            field = int(rng.integers(1, 9))
            w[field] = junk[int(rng.integers(len(junk)))]
            if field == 2 and isinstance(w[field], str):
                w[field] = 7
            if field == 8 and isinstance(w[field], dict):
                w[field] = {"a": [[1]]}
            out.append(msgpack.packb(w))
        elif case == 4:  # wrong version
            w = msgpack.unpackb(g, ext_hook=lambda c, d: msgpack.ExtType(c, d))
            w[0] = [0, 2, 3, 255, "1", 1.0][int(rng.integers(6))]
            out.append(msgpack.packb(w))
        elif case == 5:  # unknown kind
            w = msgpack.unpackb(g, ext_hook=lambda c, d: msgpack.ExtType(c, d))
            w[1] = int(rng.choice([0, 18, 99, 1000, -4]))
            out.append(msgpack.packb(w))
        elif case == 6:  # unknown sender
            w = msgpack.unpackb(g, ext_hook=lambda c, d: msgpack.ExtType(c, d))
            w[3] = int(rng.integers(7, 10**6))
            out.append(msgpack.packb(w))
        else:  # a broken array: byte flips in the ext header, or a bit flip making it inconsistent
            w = msgpack.unpackb(g, ext_hook=lambda c, d: msgpack.ExtType(c, d))
            ext = w[8]["p"]
            data = bytearray(ext.data)
            data[int(rng.integers(0, 5))] ^= int(rng.integers(1, 256))
            w[8]["p"] = msgpack.ExtType(ext.code if rng.random() < 0.9 else 77, bytes(data))
            out.append(msgpack.packb(w))
    return out


SMALL = Limits(max_message_bytes=4096)


def test_ten_thousand_bad_frames_all_rejected_with_typed_errors() -> None:
    known = frozenset(range(7))
    kinds: dict[str, int] = {}
    for frame in bad_frames(10_000, seed=1, limits=SMALL):
        try:
            decode(frame, known, SMALL)
        except ProtocolError as exc:
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        else:
            pytest.fail(f"accepted a bad frame {frame[:40]!r}")
    assert sum(kinds.values()) == 10_000
    assert set(kinds) == {"MalformedMessage", "MessageTooLarge", "UnsupportedVersion", "UnknownKind",
                          "UnknownSender"}  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_protocol_errors(frame: bytes) -> None:
    try:
        decode(frame)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(envelopes, st.data())
def test_any_truncation_or_byte_flip_is_rejected_or_valid(env: Envelope, data: st.DataObject) -> None:
    frame = bytearray(encode(env))
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode(bytes(frame[:cut]))
    pos = data.draw(st.integers(0, len(frame) - 1))
    frame[pos] ^= data.draw(st.integers(1, 255))
    try:  # a flipped byte may still be a valid envelope; it must never be anything but that or typed
        assert isinstance(decode(bytes(frame)), Envelope)
    except ProtocolError:
        pass


def test_decode_accepts_bytes_like_and_rejects_non_buffers() -> None:
    frame = encode(Envelope(Kind.HEARTBEAT, 0, 1, 0, 0, {}))
    assert decode(bytearray(frame)).kind is Kind.HEARTBEAT
    assert decode(memoryview(frame)).kind is Kind.HEARTBEAT
    for bad in (None, 12, "text"):
        with pytest.raises(ProtocolError):
            decode(bad)  # type: ignore[arg-type]
    assert DEFAULT_LIMITS.max_message_bytes >= 1 << 20


@given(envelopes)
def test_frame_size_counts_exactly_the_encoded_bytes(env: Envelope) -> None:
    """frame_size sizes a frame from msgpack's rules without encoding it: it must equal len(encode)."""
    assert frame_size(env) == len(encode(env))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 15, 16, 31, 32, 63, 64, 255, 256, 16383, 16384, 70000])
def test_frame_size_at_every_msgpack_length_boundary(n: int) -> None:
    """Strings, bytes, lists, maps and arrays across the fix/8/16/32-bit header sizes, ints across widths."""
    payload = {"s" * (n % 300): "é" * n, "b": b"x" * n, "l": list(range(min(n, 40_000))),
               "f": np.ones(n, np.float32), "i": np.arange(n // 4 + 1).reshape(-1, 1),
               "ints": [2**k for k in range(64)] + [-(2**k) for k in range(64)], "g": np.float64(n)}
    payload.update({f"k{j}": j for j in range(n % 20)})
    env = Envelope(Kind.GRADIENT, 3, COORDINATOR, 2**40, 70_000, payload, "run-é" * (n % 9), 2**63 - 1)
    assert frame_size(env) == len(encode(env))
