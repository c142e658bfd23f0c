"""The deploy gate: policy decisions with signed receipts, offline bundles, and `mir run --verify`."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from registry.client.http import MirError
from signing.keys import generate_private_key, public_key_to_pem
from tests.support.gate import Namespace, safetensors_model
from tests.support.server import LiveServer, free_port
from tests.support.trees import make_tree


@pytest.fixture
def ns(server: LiveServer, tmp_path: Path) -> Namespace:
    return Namespace(server, tmp_path, f"gate{tmp_path.name[-8:].replace('_', '').lower()}")


def test_signed_clean_safetensors_passes_policy(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/llm@1")
    result = ns.verify(f"{ns.name}/llm@1", src)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("policy receipt", "policy: signers", "policy: scan", "policy: formats", "policy: quarantine"):
        assert f"ok   {check}" in result.stdout or f"ok {check}" in result.stdout.replace("ok  ", "ok ")


def test_default_policy_denies_unsigned_and_pickle(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/unsigned@1", sign=False)
    unsigned = ns.verify(f"{ns.name}/unsigned@1", src)
    assert unsigned.returncode == 1 and "FAIL policy: signers" in unsigned.stdout
    import torch

    pickled = tmp_path / "pt"
    pickled.mkdir()
    torch.save({"w": torch.ones(2)}, pickled / "model.bin")
    ns.push(pickled, f"{ns.name}/pickled@1")
    denied = ns.verify(f"{ns.name}/pickled@1", pickled)
    assert denied.returncode == 1 and "FAIL policy: formats" in denied.stdout and "model.bin" in denied.stdout


def test_k_of_n_signers(ns: Namespace, tmp_path: Path) -> None:
    second = generate_private_key("ed25519")
    second_pem = public_key_to_pem(second.public_key()).decode()
    second_id = ns.client.register_key(ns.name, second_pem, "release-mgr")["key_id"]
    policy = {"required_signers": {"keys": [ns.key_id, second_id], "threshold": 2}}
    ns.client.json("PUT", f"/v1/namespaces/{ns.name}/policy", json=policy)
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/two@1")
    one = ns.verify(f"{ns.name}/two@1", src)
    assert one.returncode == 1 and "1 of the required 2" in one.stdout
    from signing.hashing import hash_directory
    from signing.sign import sign_manifest

    ns.client.add_signature(f"{ns.name}/two@1", sign_manifest(hash_directory(src), second).to_dict())
    second_pub = tmp_path / "second.pub"
    second_pub.write_bytes(public_key_to_pem(second.public_key()))
    both = ns.verify(f"{ns.name}/two@1", src, "--key", str(second_pub))
    assert both.returncode == 0, both.stdout


def test_quarantined_ancestor_and_revoked_key(ns: Namespace, tmp_path: Path) -> None:
    base = safetensors_model(tmp_path / "base", seed=1)
    ns.push(base, f"{ns.name}/base@1")
    child = safetensors_model(tmp_path / "child", seed=2)
    ns.push(child, f"{ns.name}/child@1",
            lineage=[{"type": "fine_tuned_from", "parent": {"ref": f"{ns.name}/base@1"}}])
    assert ns.verify(f"{ns.name}/child@1", child).returncode == 0
    ns.client.json("POST", f"/v1/artifacts/{ns.name}/base/versions/1/quarantine", json={"reason": "poisoned data"})
    affected = ns.verify(f"{ns.name}/child@1", child)
    assert affected.returncode == 1 and "FAIL policy: quarantine" in affected.stdout and "poisoned" in affected.stdout
    ns.client.revoke_key(ns.name, ns.key_id, "rotated")
    other = safetensors_model(tmp_path / "other", seed=3)
    ns.client.push(other, f"{ns.name}/other@1")  # unsigned now: the key is revoked
    revoked = ns.verify(f"{ns.name}/base@1", base)
    assert revoked.returncode == 1 and "revoked" in revoked.stdout


def test_verify_endpoint_observed_digests_and_receipt(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    version = ns.push(src, f"{ns.name}/obs@1")
    observed = {f["path"]: f["digest"] for f in version["files"]}
    ok = ns.client.json("POST", "/v1/verify", json={"reference": f"{ns.name}/obs@1", "observed": observed})
    assert ok["decision"] == "allow" and ok["receipt"]["payloadType"].endswith("verification-receipt.v1+json")
    swapped = dict(observed)
    a, b = sorted(p for p in observed if p.endswith(".safetensors"))
    swapped[a], swapped[b] = observed[b], observed[a]
    deny = ns.client.json("POST", "/v1/verify", json={"reference": f"{ns.name}/obs@1", "observed": swapped})
    assert deny["decision"] == "deny" and "modified" in json.dumps(deny["checks"])
    with pytest.raises(MirError) as exc:
        ns.client.json("POST", "/v1/verify", json={"reference": f"{ns.name}/obs@1", "observed": {"../x": "sha256:1"}})
    assert exc.value.code == "invalid_observed"
    with pytest.raises(MirError) as exc:
        ns.client.json("PUT", f"/v1/namespaces/{ns.name}/policy", json={"required_signer": {}})
    assert exc.value.code == "invalid_policy"


def test_offline_bundle_when_registry_is_unreachable(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/offline@1")
    bundle = tmp_path / "bundle.json"
    ns.server.cli("bundle", f"{ns.name}/offline@1", "-o", str(bundle), check=True)
    dead = f"http://127.0.0.1:{free_port()}"
    offline = ns.server.cli("verify", "--offline", "--bundle", str(bundle), str(src), "--key", str(ns.pub),
                            "--registry-key", str(ns.registry_pub), MIR_URL=dead)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "ok   audit log" in offline.stdout or "audit log: commit is entry" in offline.stdout
    no_bundle = ns.server.cli("run", "--verify", f"{ns.name}/offline@1", str(src), "--key", str(ns.pub), "--",
                              "true", MIR_URL=dead)
    assert no_bundle.returncode == 1 and "not running the job" in no_bundle.stderr
    with_bundle = ns.server.cli("run", "--verify", f"{ns.name}/offline@1", str(src), "--key", str(ns.pub),
                                "--bundle", str(bundle), "--registry-key", str(ns.registry_pub), "--",
                                "python", "-c", "import os; print(os.environ['MIR_VERIFIED_REF'])", MIR_URL=dead)
    assert with_bundle.returncode == 0 and f"{ns.name}/offline@1" in with_bundle.stdout

    data = json.loads(bundle.read_text())
    tampered = dict(data)
    tampered["manifest"] = {"files": [dict(f) for f in data["manifest"]["files"]]}
    tampered["manifest"]["files"][0]["digest"] = "sha256:" + "0" * 64
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = ns.server.cli("verify", "--offline", "--bundle", str(tmp_path / "tampered.json"), str(src), "--key",
                        str(ns.pub), "--registry-key", str(ns.registry_pub), MIR_URL=dead)
    assert bad.returncode == 1 and "FAIL manifest" in bad.stdout
    impostor = tmp_path / "impostor.pub"
    impostor.write_bytes(public_key_to_pem(generate_private_key("ecdsa-p256").public_key()))
    wrong = ns.server.cli("verify", "--offline", "--bundle", str(bundle), str(src), "--key", str(ns.pub),
                          "--registry-key", str(impostor), MIR_URL=dead)
    assert wrong.returncode == 1 and "not the trusted registry key" in wrong.stdout
    (tmp_path / "garbage.json").write_text('{"mediaType": "application/vnd.mir.verification-bundle.v1+json"}')
    garbage = ns.server.cli("verify", "--offline", "--bundle", str(tmp_path / "garbage.json"), str(src),
                            "--registry-key", str(ns.registry_pub), MIR_URL=dead)
    assert garbage.returncode == 2 and "has no" in garbage.stderr


def test_run_refuses_a_tampered_directory(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/runme@1")
    marker = tmp_path / "ran"
    ok = ns.server.cli("run", "--verify", f"{ns.name}/runme@1", str(src), "--key", str(ns.pub), "--",
                       "python", "-c", f"import os; open({str(marker)!r}, 'w').write(os.environ['MIR_VERIFIED_DIR'])")
    assert ok.returncode == 0, ok.stderr
    ran_on = Path(marker.read_text())
    assert ran_on.name.startswith("mir-verified-") and ran_on != src.resolve()  # the private copy, not DIR
    assert not ran_on.exists()  # removed when the job ended
    marker.unlink()
    recipe = ns.server.cli("run", "--verify", f"{ns.name}/runme@1", str(src), "--key", str(ns.pub), "--",
                           "sh", "-c", 'exec cat "$MIR_VERIFIED_DIR/config.json"')  # the README recipes' shape
    assert recipe.returncode == 0 and recipe.stdout == (src / "config.json").read_text(), recipe.stderr
    make_tree(src, {"extra.py": b"print('smuggled')"})
    refused = ns.server.cli("run", "--verify", f"{ns.name}/runme@1", str(src), "--key", str(ns.pub), "--",
                            "python", "-c", f"open({str(marker)!r}, 'w').write('x')")
    assert refused.returncode == 1 and not marker.exists()


# -- mir run --verify: the job reads a private copy of the verified bytes --------------------------------------

JOB = """
import os, signal, sys
copy = os.environ["MIR_VERIFIED_DIR"]
open(sys.argv[1], "w").write(copy)
# someone rewrites DIR after the check: the job must still read what was verified
open(os.path.join(sys.argv[2], "model-00001-of-00002.safetensors"), "wb").write(b"evil")
verified = open(os.path.join(copy, "model-00001-of-00002.safetensors"), "rb").read()
refused = []
for attempt in (lambda: open(os.path.join(copy, "model-00001-of-00002.safetensors"), "r+b"),
                lambda: open(os.path.join(copy, "new.py"), "w"),
                lambda: os.chmod(os.path.join(copy, "model-00001-of-00002.safetensors"), 0o666),
                lambda: os.remove(os.path.join(copy, "model-00001-of-00002.safetensors"))):
    try:
        attempt()
    except OSError as exc:
        refused.append(exc.__class__.__name__)
print("verified-bytes", len(verified), verified[:8].hex(), "refused", len(refused))
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_run_gives_the_job_a_private_read_only_copy(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/copy@1")
    original = (src / "model-00001-of-00002.safetensors").read_bytes()
    (tmp_path / "job.py").write_text(JOB)
    marker = tmp_path / "copy-path"
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "mir-verified-999999999-stale").mkdir()  # left by a runner that was killed: swept
    args = ["run", "--verify", f"{ns.name}/copy@1", str(src), "--key", str(ns.pub), "--copy-dir", str(copies),
            "--", sys.executable, str(tmp_path / "job.py"), str(marker), str(src)]
    done = ns.server.cli(*args, "exit")
    assert done.returncode == 0, done.stderr
    assert f"verified-bytes {len(original)} {original[:8].hex()} refused 4" in done.stdout, done.stdout
    assert (src / "model-00001-of-00002.safetensors").read_bytes() == b"evil"  # DIR changed; the job never saw it
    assert Path(marker.read_text()).parent == copies.resolve()
    assert list(copies.iterdir()) == []  # the copy is gone, and so is the stale one

    (src / "model-00001-of-00002.safetensors").write_bytes(original)
    killed = ns.server.cli(*args, "kill")
    assert killed.returncode == 128 + signal.SIGKILL, killed.stderr
    assert list(copies.iterdir()) == []  # removed although the job was killed


def test_run_refuses_a_copy_that_does_not_fit_unless_the_gap_is_accepted(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/big@1")
    marker = tmp_path / "ran"
    job = ["--", sys.executable, "-c", f"import os; open({str(marker)!r}, 'w').write(os.environ['MIR_VERIFIED_DIR'])"]
    base = ["run", "--verify", f"{ns.name}/big@1", str(src), "--key", str(ns.pub), "--max-copy-bytes", "10"]
    refused = ns.server.cli(*base, *job)
    assert refused.returncode == 2 and "--max-copy-bytes 10" in refused.stderr and "--allow-gap" in refused.stderr
    assert not marker.exists()
    gap = ns.server.cli(*base, "--allow-gap", *job)
    assert gap.returncode == 0, gap.stderr
    assert "--allow-gap given" in gap.stderr
    assert marker.read_text() == str(src.resolve())
