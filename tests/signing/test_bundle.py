"""Sigstore bundle v0.3 JSON: our shape, strict parsing, nothing but BundleFormatError on bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.bundle import BUNDLE_MEDIA_TYPE, Bundle, BundleFormatError, build_bundle, parse_bundle
from signing.dsse import sign_envelope
from signing.keys import generate_private_key, key_hint

KEY = generate_private_key()
GOOD = build_bundle(sign_envelope(b'{"hello": "world"}', KEY), KEY.public_key())


def test_shape_matches_model_signing() -> None:
    data = json.loads(GOOD.to_json())
    assert list(data) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert data["mediaType"] == BUNDLE_MEDIA_TYPE
    assert data["verificationMaterial"] == {"publicKey": {"hint": key_hint(KEY.public_key())}, "tlogEntries": []}
    assert set(data["dsseEnvelope"]) == {"payload", "payloadType", "signatures"}
    assert parse_bundle(GOOD.to_json()) == GOOD


def good_dict() -> dict[str, Any]:
    return json.loads(GOOD.to_json())


def test_missing_hint_and_tlog_are_tolerated() -> None:
    data = good_dict()
    data["verificationMaterial"] = {"publicKey": {}}
    assert parse_bundle(json.dumps(data)).key_hint is None


BAD = {
    "media type": lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.1+json"),
    "no material": lambda d: d.pop("verificationMaterial"),
    "certificate": lambda d: d.update(verificationMaterial={"certificate": {"rawBytes": "AA=="}}),
    "no public key": lambda d: d.update(verificationMaterial={}),
    "bad hint": lambda d: d["verificationMaterial"]["publicKey"].update(hint="XYZ"),
    "tlog not list": lambda d: d["verificationMaterial"].update(tlogEntries={}),
    "message signature": lambda d: (d.pop("dsseEnvelope"), d.update(messageSignature={})),
    "no envelope": lambda d: d.pop("dsseEnvelope"),
    "bad payload": lambda d: d["dsseEnvelope"].update(payload="%%%"),
    "no signatures": lambda d: d["dsseEnvelope"].update(signatures=[]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_bundles(name: str) -> None:
    data = good_dict()
    BAD[name](data)
    with pytest.raises(BundleFormatError, match=r"model\.sig"):
        parse_bundle(json.dumps(data), source="model.sig")


@pytest.mark.parametrize("cut", [0, 1, 10, 100, -2, -1])
def test_truncated_bundle(cut: int) -> None:
    text = GOOD.to_json()
    with pytest.raises(BundleFormatError):
        parse_bundle(text[:cut])


def test_duplicate_keys_and_oversize_are_refused() -> None:
    with pytest.raises(BundleFormatError, match="duplicate"):
        parse_bundle(b'{"mediaType": "a", "mediaType": "b"}')
    with pytest.raises(BundleFormatError, match="larger"):
        parse_bundle(b" " * (64 << 20 | 1))
    with pytest.raises(BundleFormatError, match="JSON"):
        parse_bundle(b"\xff\xfe")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), json_values.map(json.dumps)))
def test_arbitrary_input_only_raises_bundle_format_error(data: bytes | str) -> None:
    with pytest.raises(BundleFormatError):
        parse_bundle(data)


@settings(max_examples=200)
@given(
    path=st.sampled_from(
        [
            ["mediaType"],
            ["verificationMaterial"],
            ["verificationMaterial", "publicKey"],
            ["verificationMaterial", "publicKey", "hint"],
            ["verificationMaterial", "tlogEntries"],
            ["dsseEnvelope"],
            ["dsseEnvelope", "payload"],
            ["dsseEnvelope", "payloadType"],
            ["dsseEnvelope", "signatures"],
        ]
    ),
    value=json_values,
)
def test_replacing_any_field_parses_or_raises_cleanly(path: list[str], value: Any) -> None:
    data = good_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        parsed = parse_bundle(json.dumps(data))
    except BundleFormatError:
        return
    assert isinstance(parsed, Bundle)
