"""Load a causal language model from a local directory for the statistical detectors, and generate with it.

torch and transformers are imported inside the functions: the scanners package
must import (and the fingerprint layer work) where they are not installed.

Safety: weights are loaded only from safetensors or GGUF, never from pickle
files (``pytorch_model.bin``), since the registry never unpickles; remote code
is never trusted; nothing is fetched from a hub (``local_files_only``). Formats
are recognised from content (the ``GGUF`` magic), not from file names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanners.contamination.errors import DetectorUnavailableError, ModelLoadError

GGUF_MAGIC = b"GGUF"
SAFETENSORS_INDEX = "model.safetensors.index.json"


@dataclass(slots=True)
class LoadedLM:
    """A causal LM and its tokenizer on one device; shared by the zero-shot and watermark detectors."""

    model: Any
    tokenizer: Any
    device: str
    source: str

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)


def require_torch() -> Any:
    """Import torch, or explain which optional dependency is missing."""
    try:
        import torch
    except ImportError as exc:
        raise DetectorUnavailableError("the statistical detectors need torch (pip install torch==2.13.0)") from exc
    return torch


def resolve_device(device: str = "auto") -> str:
    """``auto`` means CUDA when available, else CPU; anything else is passed to torch as is."""
    torch = require_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {device!r}") from exc
    return device


def find_model_files(path: str | Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """The directory to load from and the GGUF file in it (None for a safetensors checkpoint).

    ``path`` may be a model directory or a GGUF file. In a directory, a
    ``config.json`` with safetensors weights wins; otherwise exactly one file
    starting with the GGUF magic must be present (or be named by ``gguf_file``).
    """
    root = Path(path)
    if root.is_file():
        if not _has_magic(root, GGUF_MAGIC):
            raise ModelLoadError(f"{root}: not a GGUF file; pass a model directory")
        return root.parent, root.name
    if not root.is_dir():
        raise ModelLoadError(f"{root}: no such model directory")
    if gguf_file is not None:
        candidate = root / gguf_file
        if Path(gguf_file).name != gguf_file or not candidate.is_file() or not _has_magic(candidate, GGUF_MAGIC):
            raise ModelLoadError(f"{candidate}: not a GGUF file in the model directory")
        return root, gguf_file
    if (root / "config.json").is_file():
        if not (root / "model.safetensors").is_file() and not (root / SAFETENSORS_INDEX).is_file():
            raise ModelLoadError(
                f"{root}: no safetensors weights (model.safetensors); pickle checkpoints such as "
                "pytorch_model.bin are refused"
            )
        return root, None
    ggufs = sorted(p.name for p in root.iterdir() if p.is_file() and _has_magic(p, GGUF_MAGIC))
    if len(ggufs) == 1:
        return root, ggufs[0]
    if ggufs:
        raise ModelLoadError(f"{root}: several GGUF files ({', '.join(ggufs)}); name one with gguf_file")
    raise ModelLoadError(f"{root}: neither config.json with safetensors weights nor a GGUF file")


def load_causal_lm(
    path: str | Path,
    *,
    gguf_file: str | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
) -> LoadedLM:
    """Load model and tokenizer from a local directory (or GGUF file) onto ``device``.

    Loading a GGUF checkpoint through transformers parses its metadata three
    times and dequantises every tensor (about 30-60 s for a 135M model on two
    cores). With ``cache_dir`` the dequantised model is written once as
    safetensors under a name derived from the GGUF file's SHA-256, and later
    loads read that (about 2 s).
    """
    require_torch()
    root, gguf = find_model_files(path, gguf_file)
    if gguf is not None and cache_dir is not None:
        converted = convert_gguf_cached(root / gguf, Path(cache_dir))
        lm = _load(converted, None, device)
        lm.source = str(root / gguf)
        return lm
    return _load(root, gguf, device)


def convert_gguf_cached(gguf_path: Path, cache_dir: Path) -> Path:
    """A safetensors copy of a GGUF model in ``cache_dir`` (made on first use, atomically)."""
    torch = require_torch()
    from safetensors.torch import save_model

    digest = hashlib.sha256()
    try:
        with open(gguf_path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ModelLoadError(f"{gguf_path}: cannot read: {exc.strerror or exc}") from exc
    target = cache_dir / f"gguf-{digest.hexdigest()[:32]}"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    lm = _load(gguf_path.parent, gguf_path.name, "cpu")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_dir))
    try:
        config = copy.deepcopy(lm.model.config)
        config.__dict__.pop("quantization_config", None)  # the weights written are plain float32
        config.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        with torch.no_grad():
            save_model(lm.model, str(tmp / "model.safetensors"))
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not merely another process winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load(root: Path, gguf: str | None, device: str) -> LoadedLM:
    torch = require_torch()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise DetectorUnavailableError("the statistical detectors need transformers (and gguf for GGUF)") from exc
    target = resolve_device(device)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    try:
        tokenizer = AutoTokenizer.from_pretrained(root, **kwargs)
        model_kwargs = dict(kwargs)
        if gguf is None:
            model_kwargs["use_safetensors"] = True
        model: Any = AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32, **model_kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{root}: cannot load a causal LM: {exc}") from exc
    model.eval()
    model.to(target)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(f"{root}: tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedLM(model=model, tokenizer=tokenizer, device=target, source=str(root / (gguf or "")))


@contextmanager
def padding_side(tokenizer: Any, side: str) -> Iterator[None]:
    """Temporarily pad on ``side`` (right to score, left to generate)."""
    previous = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = previous


def generate_texts(
    lm: LoadedLM,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int = 0,
    watermarking_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Sampled continuations of ``prompts`` (without the prompt), optionally KGW-watermarked.

    Used to build calibration and evaluation sets of synthetic text; seeded,
    and the global torch RNG state is restored afterwards.
    """
    torch = require_torch()
    from transformers import WatermarkingConfig

    wm = WatermarkingConfig(**dict(watermarking_config)) if watermarking_config is not None else None
    out: list[str] = []
    tok = lm.tokenizer
    devices = [torch.cuda.current_device()] if lm.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), padding_side(tok, "left"), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            enc = tok(batch, return_tensors="pt", padding=True).to(lm.device)
            generated = lm.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                pad_token_id=tok.pad_token_id,
                watermarking_config=wm,
            )
            new_tokens = generated[:, enc["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(new_tokens, skip_special_tokens=True))
    return out


def _has_magic(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False
