"""One policy engine: every case is decided online (``/v1/verify``, signed receipt) and offline (bundle) alike.

Each case is a namespace policy and a version; the online decision is read
from the registry's signed receipt the way ``mir verify --policy`` reads it,
the offline one from ``check_bundle`` with the same signer key trusted
locally. Both must match the expected decision and fail the same checks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry.client.bundles import check_bundle
from registry.client.receipts import Expected, check_receipt
from signing.keys import load_public_key
from tests.support.gate import MALICIOUS_PICKLE, Namespace, safetensors_model
from tests.support.server import LiveServer

OFFLINE_ONLY = {"registry key", "manifest", "registry countersignature", "attestation", "audit log", "bundle age"}
# Pickles whose only findings are globals outside the scanner's allowlist (harmless bytes; never loaded).
CUSTOM_PICKLE = b"cmypkg.models\nCustom\n(tR."
TWO_CUSTOM_PICKLE = b"(cmypkg.models\nCustom\n(tRcother.mod\nThing\n(tRl."
CUSTOM_AND_GADGET_PICKLE = b"(cmypkg.models\nCustom\n(tRcos\nsystem\n(S'true'\ntRl."
PICKLES_ALLOWED = {"allowed_formats": ["safetensors", "pickle"]}
URL_SOURCE = {"kind": "url", "url": "https://data.example.com/corpus.jsonl", "digest": "sha256:" + "ab" * 32}


@dataclass
class Case:
    name: str
    policy: dict[str, Any] | None
    artifact: str = "llm"
    signed: bool = True
    pickle: bool = False
    pickle_bytes: bytes | None = None  # another pickle, as extra.bin
    quarantine: bool = False
    lineage: list[dict[str, Any]] = field(default_factory=list)
    allow: bool = True
    failing: set[str] = field(default_factory=set)


CASES = [
    Case("default policy, signed clean safetensors", None),
    Case("default policy, unsigned", None, signed=False, allow=False, failing={"signers"}),
    # A malicious scan also quarantines the version.
    Case("default policy, malicious pickle", None, pickle=True, allow=False,
         failing={"scan", "formats", "quarantine"}),
    Case("default policy, quarantined", None, quarantine=True, allow=False, failing={"quarantine"}),
    Case("inside the glob, no signer required", {"artifacts": "core-*", "required_signers": {"threshold": 0}},
         artifact="core-llm", signed=False),
    Case("outside the glob falls back to the default, unsigned",
         {"artifacts": "core-*", "required_signers": {"threshold": 0}}, artifact="side", signed=False, allow=False,
         failing={"signers"}),
    Case("outside the glob falls back to the default, pickle",
         {"artifacts": "core-*", "allowed_formats": ["safetensors", "pickle"],
          "required_scan_verdicts": ["clean", "suspicious", "malicious"]},
         artifact="tools", pickle=True, allow=False, failing={"scan", "formats", "quarantine"}),
    Case("outside the glob falls back to the default, quarantined",
         {"artifacts": "core-*", "refuse_quarantined_lineage": False}, artifact="side", quarantine=True,
         allow=False, failing={"quarantine"}),
    Case("two of two signers, one signed", {"required_signers": {"keys": ["$KEY", "0" * 16], "threshold": 2}},
         allow=False, failing={"signers"}),
    Case("quarantine allowed by policy", {"refuse_quarantined_lineage": False}, quarantine=True),
    Case("unknown provenance over a synthetic limit", {"max_synthetic_fraction": 0.5},
         lineage=[{"type": "trained_on", "parent": {"external": URL_SOURCE}}], allow=False,
         failing={"synthetic data"}),
    Case("unlisted global, not trusted", PICKLES_ALLOWED, pickle_bytes=CUSTOM_PICKLE, allow=False, failing={"scan"}),
    Case("unlisted global trusted by the namespace",
         {**PICKLES_ALLOWED, "trusted_globals": ["mypkg.models.Custom"]}, pickle_bytes=CUSTOM_PICKLE),
    Case("trusted global beside one the namespace does not trust",
         {**PICKLES_ALLOWED, "trusted_globals": ["mypkg.models.Custom"]}, pickle_bytes=TWO_CUSTOM_PICKLE,
         allow=False, failing={"scan"}),
    Case("trusted global beside a gadget", {**PICKLES_ALLOWED, "trusted_globals": ["mypkg.models.Custom"]},
         pickle_bytes=CUSTOM_AND_GADGET_PICKLE, allow=False, failing={"scan", "quarantine"}),
    Case("trusted global outside the policy's glob", {**PICKLES_ALLOWED, "artifacts": "core-*",
         "trusted_globals": ["mypkg.models.Custom"]}, artifact="side", pickle_bytes=CUSTOM_PICKLE, allow=False,
         failing={"scan", "formats"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_online_and_offline_decide_alike(server: LiveServer, tmp_path: Path, case: Case) -> None:
    ns = Namespace(server, tmp_path, f"parity{secrets.token_hex(4)}")
    if case.policy is not None:
        rules = {**case.policy}
        if "required_signers" in rules:
            keys = [ns.key_id if k == "$KEY" else k for k in rules["required_signers"].get("keys", [])]
            rules["required_signers"] = {**rules["required_signers"], "keys": keys}
        ns.client.json("PUT", f"/v1/namespaces/{ns.name}/policy", json=rules)
    src = safetensors_model(tmp_path / "m")
    if case.pickle:
        (src / "extra.bin").write_bytes(MALICIOUS_PICKLE)
    if case.pickle_bytes is not None:
        (src / "extra.bin").write_bytes(case.pickle_bytes)
    repo = f"{ns.name}/{case.artifact}"
    version = ns.push(src, f"{repo}@1", sign=case.signed, lineage=case.lineage)
    if case.quarantine:
        ns.client.json("POST", f"/v1/artifacts/{repo}/versions/1/quarantine", json={"reason": "parity"})
    registry_key = load_public_key(ns.registry_pub)

    nonce = secrets.token_urlsafe(24)
    answer = ns.client.json("POST", "/v1/verify", json={"reference": f"{repo}@1", "nonce": nonce})
    receipt = check_receipt(answer["receipt"], registry_key, Expected(
        reference=f"{repo}@1", artifact=repo, version="1", manifest_digest=version["manifest_digest"],
        observed=None, nonce=nonce))
    online_failing = {c["check"] for c in receipt["checks"] if not c["ok"]}

    bundle = ns.client.json("GET", f"/v1/artifacts/{repo}/versions/1/bundle")
    report = check_bundle(bundle, registry_key=registry_key, signer_keys=[load_public_key(ns.pub)])
    offline_failing = {name for name, ok, _ in report.checks if not ok}

    assert (receipt["decision"] == "allow", report.ok) == (case.allow, case.allow), (receipt, report.checks)
    assert online_failing == offline_failing - OFFLINE_ONLY == case.failing, (receipt["checks"], report.checks)
    assert not offline_failing & OFFLINE_ONLY, report.checks
