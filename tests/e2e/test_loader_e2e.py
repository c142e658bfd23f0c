"""load_verified against the real registry: what an inference job sees (CPU; GPU is the same path)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from registry.client.loader import LoaderError, PolicyRefusedError, VerifiedLoadError, load_verified
from tests.support.gate import Namespace, safetensors_model
from tests.support.server import LiveServer, free_port


@pytest.fixture
def ns(server: LiveServer, tmp_path: Path) -> Namespace:
    return Namespace(server, tmp_path, f"load{tmp_path.name[-8:].replace('_', '').lower()}")


def expected_tensors(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def load(ns: Namespace, source: object, directory: Path, **kw: object) -> dict[str, torch.Tensor]:
    return load_verified(source, directory, "cpu", keys=[ns.pub], registry_key=ns.registry_pub,  # type: ignore[arg-type]
                         url=ns.server.url, token=ns.server.admin_token, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["sha256", "blake3", "auto"])
def test_loads_exactly_the_signed_tensors(ns: Namespace, tmp_path: Path, algorithm: str) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/llm@1")
    got = load(ns, f"{ns.name}/llm@1", src, algorithm=algorithm)
    want = expected_tensors(src)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_tampered_byte_swapped_shard_extra_file(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/llm@1")
    shard1, shard2 = sorted(src.glob("*.safetensors"))

    tampered = tmp_path / "tampered"
    shutil.copytree(src, tampered)
    data = bytearray((tampered / shard1.name).read_bytes())
    data[-1] ^= 0x01
    (tampered / shard1.name).write_bytes(bytes(data))
    with pytest.raises(VerifiedLoadError, match=re.escape(shard1.name)):
        load(ns, f"{ns.name}/llm@1", tampered)

    swapped = tmp_path / "swapped"
    shutil.copytree(src, swapped)
    (swapped / shard1.name).write_bytes(shard2.read_bytes())
    (swapped / shard2.name).write_bytes(shard1.read_bytes())
    with pytest.raises(VerifiedLoadError):
        load(ns, f"{ns.name}/llm@1", swapped)

    extra = tmp_path / "extra"
    shutil.copytree(src, extra)
    (extra / "adapter.safetensors").write_bytes(shard1.read_bytes())
    with pytest.raises(VerifiedLoadError, match=r"adapter\.safetensors"):
        load(ns, f"{ns.name}/llm@1", extra)


def test_pickle_checkpoint_is_refused(ns: Namespace, tmp_path: Path) -> None:
    pickled = tmp_path / "pt"
    pickled.mkdir()
    torch.save({"w": torch.ones(2)}, pickled / "model.safetensors")  # a pickle wearing a safetensors name
    ns.push(pickled, f"{ns.name}/pickled@1")
    with pytest.raises(PolicyRefusedError, match="formats"):
        load(ns, f"{ns.name}/pickled@1", pickled)


def test_revoked_key_and_quarantined_ancestor(ns: Namespace, tmp_path: Path) -> None:
    base = safetensors_model(tmp_path / "base", seed=1)
    ns.push(base, f"{ns.name}/base@1")
    child = safetensors_model(tmp_path / "child", seed=2)
    ns.push(child, f"{ns.name}/child@1", lineage=[{"type": "fine_tuned_from", "parent": {"ref": f"{ns.name}/base@1"}}])
    load(ns, f"{ns.name}/child@1", child)
    ns.client.json("POST", f"/v1/artifacts/{ns.name}/base/versions/1/quarantine", json={"reason": "bad base"})
    with pytest.raises(PolicyRefusedError, match="quarantine"):
        load(ns, f"{ns.name}/child@1", child)
    ns.client.revoke_key(ns.name, ns.key_id, "stolen")
    with pytest.raises(PolicyRefusedError, match="signers"):
        load(ns, f"{ns.name}/base@1", base)


def test_registry_unreachable_with_and_without_bundle(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m")
    ns.push(src, f"{ns.name}/llm@1")
    bundle = ns.client.json("GET", f"/v1/artifacts/{ns.name}/llm/versions/1/bundle")
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoaderError, match="bundle"):
        load_verified(f"{ns.name}/llm@1", src, "cpu", keys=[ns.pub], registry_key=ns.registry_pub, url=dead,
                      token="mir_x")
    got = load_verified(tmp_path / "bundle.json", src, "cpu", keys=[ns.pub], registry_key=ns.registry_pub,
                        url=dead, token="mir_x")
    assert set(got) == set(expected_tensors(src))
    bundle["manifest"]["files"][0]["digest"] = "sha256:" + "1" * 64
    with pytest.raises(PolicyRefusedError, match="manifest"):
        load_verified(bundle, src, "cpu", keys=[ns.pub], registry_key=ns.registry_pub, url=dead, token="mir_x")


# -- transformers: from_pretrained_verified -------------------------------------------------------------------


def tiny_gpt2(root: Path) -> Path:
    """A 2-layer GPT-2 with a word-piece tokenizer, saved as transformers saves it (safetensors)."""
    from transformers import BertTokenizerFast, GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "model", "is", "verified", "before", "it", "runs"]
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=len(words)))
    model.generation_config = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=0)
    model.save_pretrained(root, max_shard_size="20KB")  # sharded, with model.safetensors.index.json
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root)
    return root


def test_from_pretrained_verified_generates_as_from_pretrained(ns: Namespace, tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    from registry.client.loader import from_pretrained_verified

    src = tiny_gpt2(tmp_path / "gpt2")
    ns.push(src, f"{ns.name}/gpt2@1")
    kw = {"keys": [ns.pub], "registry_key": ns.registry_pub, "url": ns.server.url, "token": ns.server.admin_token}
    verified = from_pretrained_verified(GPT2LMHeadModel, f"{ns.name}/gpt2@1", src, **kw)
    plain = GPT2LMHeadModel.from_pretrained(src).eval()
    assert verified.tokenizer is not None
    ids = verified.tokenizer("the model is verified", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(verified.model.generate(ids), plain.generate(ids))
        assert torch.equal(verified.model(ids).logits, plain(ids).logits)

    shards = sorted(p.name for p in src.glob("model-*.safetensors"))
    assert len(shards) > 1 and (src / "model.safetensors.index.json").is_file()
    for name in ("config.json", shards[-1], "vocab.txt"):  # one byte flipped after download
        flipped = tmp_path / f"flipped-{name}"
        shutil.copytree(src, flipped)
        data = bytearray((flipped / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (flipped / name).write_bytes(bytes(data))
        with pytest.raises(VerifiedLoadError, match=re.escape(name)):
            from_pretrained_verified(GPT2LMHeadModel, f"{ns.name}/gpt2@1", flipped, **kw)


def test_from_pretrained_verified_refuses_pickled_weights(ns: Namespace, tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    from registry.client.loader import from_pretrained_verified

    pickled = tiny_gpt2(tmp_path / "pickled")
    state: dict[str, torch.Tensor] = {}
    for shard in pickled.glob("model*.safetensors*"):
        if shard.suffix == ".safetensors":
            state.update(load_file(str(shard)))
        shard.unlink()
    torch.save(state, pickled / "pytorch_model.bin")  # the pickle format transformers also reads
    ns.push(pickled, f"{ns.name}/gpt2-pickled@1")
    with pytest.raises(PolicyRefusedError, match="formats"):
        from_pretrained_verified(GPT2LMHeadModel, f"{ns.name}/gpt2-pickled@1", pickled, keys=[ns.pub],
                                 registry_key=ns.registry_pub, url=ns.server.url, token=ns.server.admin_token)
