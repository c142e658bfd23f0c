"""The deploy gate against an attacker on the network path: a tampering proxy in front of the real registry.

``ns/llm@1`` is allowed; ``ns/llm@2`` has exactly the same files and
signatures but descends from a quarantined version, so the registry denies it. Whatever the proxy
does to the answers about ``@2``, the CLI (``mir verify --policy``, ``mir run
--verify``) and ``load_verified`` must refuse it, and they must refuse stale
bundles.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry.client.bundles import Subject, check_bundle
from registry.client.loader import PolicyRefusedError, load_verified
from signing.keys import load_public_key
from tests.support.forgery import ago, payload_of, registry_signer, resign, tamper_unsigned
from tests.support.gate import Namespace, safetensors_model
from tests.support.proxy import Exchange, TamperingProxy, tampering_proxy
from tests.support.server import LiveServer


@dataclass
class Setup:
    ns: Namespace
    src: Path
    proxy: TamperingProxy
    allowed: str  # ns/llm@1
    denied: str  # ns/llm@2, same files, but fine-tuned from a quarantined version

    def verify(self, ref: str) -> Any:
        return self.ns.verify(ref, self.src, MIR_URL=self.proxy.url)


@pytest.fixture
def setup(server: LiveServer, tmp_path: Path) -> Iterator[Setup]:
    ns = Namespace(server, tmp_path, f"tamper{tmp_path.name[-8:].replace('_', '').lower()}")
    src = safetensors_model(tmp_path / "m")
    # (A quarantine of llm@2 itself would cover llm@1 too: a quarantine follows identical content.)
    ns.push(safetensors_model(tmp_path / "base", seed=1), f"{ns.name}/base@1")
    ns.client.json("POST", f"/v1/artifacts/{ns.name}/base/versions/1/quarantine", json={"reason": "bad data"})
    ns.push(src, f"{ns.name}/llm@1")
    ns.push(src, f"{ns.name}/llm@2", lineage=[{"type": "fine_tuned_from", "parent": {"ref": f"{ns.name}/base@1"}}])
    with tampering_proxy(server.url) as proxy:
        yield Setup(ns, src, proxy, f"{ns.name}/llm@1", f"{ns.name}/llm@2")


def is_verify(ex: Exchange) -> bool:
    return ex.method == "POST" and ex.path == "/v1/verify"


def on_verify_answer(change: Any) -> Any:
    def hook(ex: Exchange) -> None:
        if is_verify(ex):
            ex.set_answer_json(change(ex.answer_json()))
    return hook


def on_verify_request(change: Any) -> Any:
    def hook(ex: Exchange) -> None:
        if is_verify(ex):
            ex.set_request_json(change(ex.request_json()))
    return hook


def refused(result: Any, reason: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any(reason in line for line in fails), result.stdout


def test_honest_proxy_changes_nothing(setup: Setup) -> None:
    ok = setup.verify(setup.allowed)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   policy receipt: decision 'allow'" in ok.stdout
    nonce = setup.proxy.seen[-1].request_json()["nonce"]
    assert payload_of(setup.proxy.seen[-1].answer_json()["receipt"])["nonce"] == nonce
    refused(setup.verify(setup.denied), "policy: quarantine")


def _all_ok(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "decision": "allow", "checks": [{**c, "ok": True} for c in answer["checks"]]}


@pytest.mark.parametrize(("case", "change", "reason"), [
    ("flip the decision", lambda a: {**a, "decision": "allow"}, "policy: quarantine"),
    ("swap the checks", lambda a: {**a, "checks": [{**c, "ok": True} for c in a["checks"]]}, "policy: quarantine"),
    ("flip both", _all_ok, "policy: quarantine"),
    ("forge the receipt's decision", lambda a: {**_all_ok(a), "receipt": tamper_unsigned(
        a["receipt"], decision="allow", checks=[{**c, "ok": True} for c in a["checks"]])}, "policy receipt"),
])
def test_unsigned_answer_is_ignored(setup: Setup, case: str, change: Any, reason: str) -> None:
    setup.proxy.after = on_verify_answer(change)
    refused(setup.verify(setup.denied), reason)


def test_receipt_of_another_version_is_refused(setup: Setup, tmp_path: Path) -> None:
    # The attacker asks about @1 (same files, allowed) and hands back its genuine receipt, nonce included.
    setup.proxy.before = on_verify_request(lambda body: {**body, "reference": setup.allowed})
    refused(setup.verify(setup.denied), "policy receipt: the receipt is about reference")
    marker = tmp_path / "ran"
    run = setup.ns.server.cli("run", "--verify", setup.denied, str(setup.src), "--key", str(setup.ns.pub), "--",
                              "python", "-c", f"open({str(marker)!r}, 'w').write('x')", MIR_URL=setup.proxy.url)
    assert run.returncode == 1 and not marker.exists() and "policy receipt" in run.stderr


def test_earlier_receipt_and_nonce_tampering_are_refused(setup: Setup) -> None:
    assert setup.verify(setup.allowed).returncode == 0
    earlier = setup.proxy.seen[-1].answer_json()
    setup.proxy.after = on_verify_answer(lambda _: earlier)
    refused(setup.verify(setup.allowed), "nonce")
    setup.proxy.after = None
    setup.proxy.before = on_verify_request(lambda body: {k: v for k, v in body.items() if k != "nonce"})
    refused(setup.verify(setup.allowed), "nonce")
    setup.proxy.before = on_verify_request(lambda body: {**body, "nonce": secrets.token_urlsafe(24)})
    refused(setup.verify(setup.allowed), "nonce")


def test_expired_receipt_is_refused(setup: Setup) -> None:
    with registry_signer(setup.ns.server) as signer:
        setup.proxy.after = on_verify_answer(lambda a: {**a, "receipt": resign(
            signer, a["receipt"], issued_at=ago(minutes=20), expires_at=ago(minutes=15))})
        refused(setup.verify(setup.allowed), "expired")
        # Rewriting the expiry in the unsigned part changes nothing either way.
        setup.proxy.after = on_verify_answer(lambda a: {**a, "expires_at": ago(days=1)})
        assert setup.verify(setup.allowed).returncode == 0


# -- load_verified and bundles -----------------------------------------------------------------------------------


def is_bundle(ex: Exchange) -> bool:
    return ex.method == "GET" and ex.path.endswith("/bundle")


def load(setup: Setup, source: object, **kw: Any) -> dict[str, Any]:
    return load_verified(source, setup.src, "cpu", keys=[setup.ns.pub],  # type: ignore[arg-type]
                         registry_key=setup.ns.registry_pub, url=setup.proxy.url, token=setup.ns.server.admin_token,
                         **kw)


def test_loader_refuses_replayed_tampered_and_stale_bundles(setup: Setup) -> None:
    assert load(setup, setup.allowed)
    first = setup.proxy.seen[-1].answer_json()
    with pytest.raises(PolicyRefusedError, match="quarantine"):
        load(setup, setup.denied)

    def other_version(ex: Exchange) -> None:
        if is_bundle(ex):
            ex.path = ex.path.replace("/versions/2/", "/versions/1/")
    setup.proxy.before = other_version
    with pytest.raises(PolicyRefusedError, match="subject"):
        load(setup, setup.denied)

    def no_nonce(ex: Exchange) -> None:
        if is_bundle(ex):
            ex.query.pop("nonce", None)
    setup.proxy.before = no_nonce
    with pytest.raises(PolicyRefusedError, match="nonce"):
        load(setup, setup.allowed)
    setup.proxy.before = None
    setup.proxy.after = lambda ex: ex.set_answer_json(first) if is_bundle(ex) else None
    with pytest.raises(PolicyRefusedError, match="nonce"):
        load(setup, setup.allowed)

    setup.proxy.after = lambda ex: ex.set_answer_json({**ex.answer_json(), "version": "2"}) if is_bundle(ex) else None
    with pytest.raises(PolicyRefusedError, match="attestation"):
        load(setup, setup.allowed)

    def unsigned_clean(ex: Exchange) -> None:
        if is_bundle(ex):
            data = ex.answer_json()
            ex.set_answer_json({**data, "attestation": tamper_unsigned(data["attestation"], quarantine=None)})
    setup.proxy.after = unsigned_clean
    with pytest.raises(PolicyRefusedError, match="attestation"):
        load(setup, setup.denied)

    with registry_signer(setup.ns.server) as signer:
        def month_old(ex: Exchange) -> None:
            if is_bundle(ex):
                data = ex.answer_json()
                ex.set_answer_json({**data, "attestation": resign(signer, data["attestation"], issued_at=ago(days=30))})
        setup.proxy.after = month_old
        with pytest.raises(PolicyRefusedError, match="bundle age"):
            load(setup, setup.allowed)
        assert load(setup, setup.allowed, max_bundle_age=timedelta(days=60))


def test_bundle_age_policy_override_and_frozen_clock(setup: Setup, tmp_path: Path) -> None:
    ns, ref = setup.ns, setup.allowed
    bundle = ns.client.json("GET", f"/v1/artifacts/{ns.name}/llm/versions/1/bundle")
    issued = datetime.fromisoformat(payload_of(bundle["attestation"])["issued_at"])
    key = load_public_key(ns.registry_pub)
    signer_keys = [load_public_key(ns.pub)]

    def ok_at(data: dict[str, Any], now: datetime, **kw: Any) -> bool:
        return check_bundle(data, registry_key=key, signer_keys=signer_keys, now=now, **kw).ok

    assert ok_at(bundle, issued + timedelta(days=6))
    assert not ok_at(bundle, issued + timedelta(days=8))  # the default bundle_max_age is 7 days
    assert ok_at(bundle, issued + timedelta(days=8), max_bundle_age=timedelta(days=30))
    assert not ok_at(bundle, issued - timedelta(hours=1))  # issued in the future: forged or a broken clock
    assert not ok_at(bundle, issued, subject=Subject(ref.split("@")[0], "2"))

    ns.client.json("PUT", f"/v1/namespaces/{ns.name}/policy", json={"bundle_max_age": 3600})
    strict = ns.client.json("GET", f"/v1/artifacts/{ns.name}/llm/versions/1/bundle")
    issued = datetime.fromisoformat(payload_of(strict["attestation"])["issued_at"])
    assert ok_at(strict, issued + timedelta(minutes=30))
    assert not ok_at(strict, issued + timedelta(hours=2))
    with pytest.raises(PolicyRefusedError, match="bundle age"):
        load_verified(strict, setup.src, "cpu", keys=[ns.pub], registry_key=ns.registry_pub,
                      now=issued + timedelta(hours=2))

    # The CLI: a month-old bundle (genuinely signed) is refused offline unless the caller allows that age.
    with registry_signer(ns.server) as signer:
        old = {**bundle, "attestation": resign(signer, bundle["attestation"], issued_at=ago(days=30))}
    path = tmp_path / "old.bundle.json"
    path.write_text(json.dumps(old))
    offline = ["verify", "--offline", "--bundle", str(path), str(setup.src), "--key", str(ns.pub),
               "--registry-key", str(ns.registry_pub)]
    refused(ns.server.cli(*offline), "bundle age")
    assert ns.server.cli(*offline, "--max-bundle-age", "60d").returncode == 0
    bad = ns.server.cli(*offline, "--max-bundle-age", "soon")
    assert bad.returncode == 2 and "invalid age 'soon'" in bad.stderr and "Traceback" not in bad.stderr
    run = ["run", "--key", str(ns.pub), "--registry-key", str(ns.registry_pub), str(setup.src)]
    stale = ns.server.cli(*run, "--verify", ref, "--bundle", str(path), "--", "true")
    assert stale.returncode == 1 and "bundle age" in stale.stdout
    fresh = tmp_path / "fresh.bundle.json"
    fresh.write_text(json.dumps(bundle))
    other = ns.server.cli(*run, "--verify", setup.denied, "--bundle", str(fresh), "--", "true")
    assert other.returncode == 1 and "FAIL subject" in other.stdout
    assert ns.server.cli(*run, "--verify", ref, "--bundle", str(fresh), "--", "true").returncode == 0
