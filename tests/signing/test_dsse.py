"""DSSE: PAE against the spec's vector, signing, and strict parsing (property-based)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.dsse import (
    Envelope,
    EnvelopeFormatError,
    Signature,
    add_signature,
    b64decode_field,
    pae,
    sign_envelope,
    verifying_keys,
)
from signing.keys import generate_private_key, key_id


def test_pae_spec_vector() -> None:
    # From the DSSE v1.0.0 protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", "\u00e9".encode()) == "DSSEv1 3 t\u00e9 2 \u00e9".encode()


@given(st.text(max_size=30), st.binary(max_size=60), st.text(max_size=30), st.binary(max_size=60))
def test_pae_is_injective(t1: str, p1: bytes, t2: str, p2: bytes) -> None:
    if (t1, p1) != (t2, p2):
        assert pae(t1, p1) != pae(t2, p2)


def test_sign_verify_and_countersign() -> None:
    user, registry, stranger = (generate_private_key(k) for k in ("ecdsa-p256", "ed25519", "ecdsa-p384"))
    envelope = sign_envelope(b'{"x": 1}', user)
    assert envelope.signatures[0].keyid == key_id(user.public_key())
    both = add_signature(envelope, registry)
    keys = [user.public_key(), registry.public_key(), stranger.public_key()]
    assert verifying_keys(both, keys) == keys[:2]
    tampered = Envelope(b'{"x": 2}', both.payload_type, both.signatures)
    assert verifying_keys(tampered, keys) == []
    # A signature for one payload type does not verify as another.
    retyped = Envelope(envelope.payload, "text/plain", envelope.signatures)
    assert verifying_keys(retyped, keys) == []


def test_json_round_trip() -> None:
    envelope = sign_envelope(b"payload", generate_private_key())
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_base64_variants_are_accepted() -> None:
    raw = bytes(range(250, 256)) + b"?>"
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    for text in (std, std.rstrip("="), url, url.rstrip("=")):
        assert b64decode_field(text, "f") == raw


@pytest.mark.parametrize("value", ["a", "ab=c", "ab===", "a+b_", "abc!", "ab=", 5, None])
def test_bad_base64_is_refused(value: object) -> None:
    with pytest.raises(EnvelopeFormatError):
        b64decode_field(value, "f")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {},
        {"payload": "", "payloadType": "t"},
        {"payload": "", "payloadType": "", "signatures": [{"sig": "AA=="}]},
        {"payload": "", "payloadType": "t", "signatures": []},
        {"payload": "", "payloadType": "t", "signatures": [{}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": ""}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": "AA==", "keyid": 3}]},
        {"payload": "!!", "payloadType": "t", "signatures": [{"sig": "AA=="}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": "AA=="}] * 65},
    ],
)
def test_malformed_envelopes(data: object) -> None:
    with pytest.raises(EnvelopeFormatError):
        Envelope.from_dict(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_parsing_arbitrary_input_only_raises_envelope_errors(data: bytes) -> None:
    try:
        envelope = Envelope.from_json(data)
    except EnvelopeFormatError:
        return
    assert isinstance(envelope, Envelope)


@given(
    payload=st.binary(max_size=100),
    payload_type=st.text(min_size=1, max_size=40),
    sigs=st.lists(st.tuples(st.binary(min_size=1, max_size=80), st.text(max_size=20)), min_size=1, max_size=4),
)
def test_round_trip_property(payload: bytes, payload_type: str, sigs: list[tuple[bytes, str]]) -> None:
    envelope = Envelope(payload, payload_type, tuple(Signature(s, k) for s, k in sigs))
    assert Envelope.from_json(envelope.to_json()) == envelope
