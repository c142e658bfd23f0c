"""The verified read: exactly the verified bytes become tensors, and every bad input is refused by name."""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import load_file, save, save_file

from registry.client.read_errors import LoaderError, VerifiedLoadError
from registry.client.safetensors_header import SafetensorsHeaderError, parse_safetensors_header
from registry.client.verified_read import read_verified, read_verified_safetensors
from signing.hashing import hash_file
from signing.tree import list_files

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# -- helpers -------------------------------------------------------------------------------------------------------
def digests(root: Path, algorithm: str = "sha256") -> dict[str, str]:
    """What a verified manifest would say about ``root``, computed independently of the loader."""
    return {f.path: hash_file(f.source, algorithm) for f in list_files(root)}


def sample_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "bf16": torch.randn(17, 33, generator=g).to(torch.bfloat16),
        "fp16": torch.randn(5, 7, generator=g).to(torch.float16),
        "fp32": torch.randn(3, 1000, generator=g),
        "fp64": torch.randn(9, generator=g, dtype=torch.float64),
        "int8": torch.randint(-128, 127, (11, 3), generator=g, dtype=torch.int8),
        "uint8": torch.randint(0, 255, (13,), generator=g, dtype=torch.uint8),
        "int16": torch.randint(-1000, 1000, (4, 4), generator=g, dtype=torch.int16),
        "int32": torch.randint(-(2**31), 2**31 - 1, (6,), generator=g, dtype=torch.int32),
        "int64": torch.randint(-(2**62), 2**62, (3, 2), generator=g, dtype=torch.int64),
        "bool": torch.rand(23, generator=g) > 0.5,
        "fp8": torch.randn(8, 4, generator=g).to(torch.float8_e4m3fn),
        "complex": torch.randn(4, generator=g, dtype=torch.complex64),
        "empty": torch.empty(0),
        "empty_2d": torch.empty(2, 0, 3, dtype=torch.bfloat16),
        "scalar": torch.tensor(3.25),
    }


def write_model(root: Path, shards: int = 2, seed: int = 0) -> Path:
    """A sharded model with a config and tokenizer files, like a Hugging Face snapshot."""
    root.mkdir(parents=True, exist_ok=True)
    tensors = sample_tensors(seed)
    names = sorted(tensors)
    for i in range(shards):
        part = {f"layer{i}.{n}": tensors[n] for n in names[i::shards]}
        save_file(part, root / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", metadata={"format": "pt"})
    (root / "config.json").write_text(json.dumps({"hidden_size": 64, "architectures": ["Toy"]}))
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\nhello\nworld\n")
    (root / "README.md").write_text("This model is a toy.\n")  # starts with a pickle opcode byte ('T')
    return root


def reference(root: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(root.glob("*.safetensors")):
        out.update(load_file(path))
    return out


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        other = got[name].cpu()
        assert other.dtype == tensor.dtype, name
        assert other.shape == tensor.shape, name
        # bitwise, so NaNs and -0.0 count too
        assert _bits(other) == _bits(tensor), name


def _bits(tensor: torch.Tensor) -> list[int]:
    return tensor.contiguous().reshape(-1).view(torch.uint8).tolist()


def refused(root: Path, expected: dict[str, str], code: str, **kw: object) -> VerifiedLoadError:
    with pytest.raises(VerifiedLoadError) as info:
        read_verified(root, expected, **kw)  # type: ignore[arg-type]
    assert info.value.code == code, str(info.value)
    assert str(info.value).startswith(f"{info.value.path}: ")
    return info.value


def raw_safetensors(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def one_file(tmp_path: Path, name: str, data: bytes, algorithm: str = "sha256") -> tuple[Path, dict[str, str]]:
    root = tmp_path / "m"
    root.mkdir(exist_ok=True)
    (root / name).write_bytes(data)
    return root, digests(root, algorithm)


# -- the good path -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
@pytest.mark.parametrize(("workers", "staging", "chunk_size"), [(1, False, 8 << 20), (4, False, 4096), (3, True, 4096)])
def test_round_trip_equals_load_file(
    tmp_path: Path, algorithm: str, workers: int, staging: bool, chunk_size: int
) -> None:
    root = write_model(tmp_path / "m", shards=3)
    result = read_verified(root, digests(root, algorithm), workers=workers, staging=staging, chunk_size=chunk_size)
    assert_same(result.tensors, reference(root))
    assert result.files == {
        "README.md": "text",
        "config.json": "text",
        "model-00001-of-00003.safetensors": "safetensors",
        "model-00002-of-00003.safetensors": "safetensors",
        "model-00003-of-00003.safetensors": "safetensors",
        "tokenizer/vocab.txt": "text",
    }
    assert result.metadata["model-00001-of-00003.safetensors"] == {"format": "pt"}


def test_drop_in_returns_a_plain_dict(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    tensors = read_verified_safetensors(root, digests(root))
    assert isinstance(tensors, dict)
    assert_same(tensors, reference(root))


def test_sha256_and_blake3_mixed_in_one_manifest(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root, "sha256")
    expected["config.json"] = hash_file(root / "config.json", "blake3")
    expected["model-00002-of-00002.safetensors"] = hash_file(root / "model-00002-of-00002.safetensors", "blake3")
    assert_same(read_verified_safetensors(root, expected), reference(root))


def test_many_tensors_and_a_long_header(tmp_path: Path) -> None:
    """Over 4 KiB of header, and more tensors per read than one preadv may take."""
    tensors = {f"t{i:04d}": torch.full((3,), float(i)) for i in range(1500)}
    root = tmp_path / "m"
    root.mkdir()
    save_file(tensors, root / "model.safetensors")
    for staging in (False, True):
        got = (
            read_verified_safetensors(root, digests(root), workers=1)
            if not staging
            else read_verified(root, digests(root), staging=True, chunk_size=8192).tensors
        )
        assert_same(got, tensors)


def test_unaligned_tensor_offsets(tmp_path: Path) -> None:
    """Other writers need not align data; our tensors get their own, aligned, storage."""
    header = {
        "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
        "c": {"dtype": "BF16", "shape": [1], "data_offsets": [11, 13]},
    }
    data = bytes([1, 2, 3]) + struct.pack("<ff", 1.5, -2.0) + bytes([0x80, 0x3F])
    blob = raw_safetensors(header, data)
    root, expected = one_file(tmp_path, "odd.safetensors", blob)
    got = read_verified_safetensors(root, expected)
    assert_same(got, st_load(blob))
    assert got["b"].tolist() == [1.5, -2.0]


def test_dtype_casts_floating_point_only(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m", shards=1)
    got = read_verified_safetensors(root, digests(root), dtype=torch.float32)
    want = reference(root)
    assert got["layer0.bf16"].dtype == torch.float32
    assert torch.equal(got["layer0.bf16"], want["layer0.bf16"].float())
    assert got["layer0.int8"].dtype == torch.int8
    assert got["layer0.bool"].dtype == torch.bool


def test_directory_without_tensors_gives_empty_dict(tmp_path: Path) -> None:
    root, expected = one_file(tmp_path, "config.json", b"{}")
    assert read_verified(root, expected).tensors == {}


def test_allowed_data_file_is_checked_not_loaded(tmp_path: Path) -> None:
    blob = b"\xfe\xff" + bytes(range(256)) * 20  # no known format, not text, no pickle opcode first
    root, expected = one_file(tmp_path, "logo.bin", blob)
    refused(root, expected, "unknown_format")
    assert read_verified(root, expected, allow_data_files=["logo.bin"]).files == {"logo.bin": "data"}
    (root / "logo.bin").write_bytes(blob[::-1])
    refused(root, expected, "digest_mismatch", allow_data_files=["logo.bin"])


def test_symlink_inside_the_directory_is_followed(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m", shards=1)
    (root / "blobs").mkdir()
    (root / "model-00001-of-00001.safetensors").rename(root / "blobs" / "abc")
    (root / "model-00001-of-00001.safetensors").symlink_to(root / "blobs" / "abc")
    expected = digests(root)
    del expected["blobs/abc"]
    got = read_verified_safetensors(root, expected, allow_extra_files=["blobs/abc"])
    assert_same(got, load_file(root / "blobs" / "abc"))
    (root / "blobs" / "abc").write_bytes(b"{}")
    assert refused(root, expected, "digest_mismatch", allow_extra_files=["blobs/abc"]).path.endswith(".safetensors")


# -- tampering and directory mismatches ----------------------------------------------------------------------------
def test_tampered_data_byte_names_the_file(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    target = root / "model-00002-of-00002.safetensors"
    data = bytearray(target.read_bytes())
    data[-5] ^= 1
    target.write_bytes(data)
    error = refused(root, expected, "digest_mismatch")
    assert error.path == "model-00002-of-00002.safetensors"
    assert expected[error.path] in error.reason


def test_tampered_header_is_reported_as_a_mismatch_not_a_format_error(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    target = root / "model-00001-of-00002.safetensors"
    data = bytearray(target.read_bytes())
    data[12] = ord("#")  # breaks the JSON
    target.write_bytes(data)
    assert refused(root, expected, "digest_mismatch").path == target.name


def test_tampered_config_is_refused(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    (root / "config.json").write_text('{"hidden_size": 65}')
    assert refused(root, expected, "digest_mismatch").path == "config.json"


def test_swapped_shards_are_refused(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    a, b = root / "model-00001-of-00002.safetensors", root / "model-00002-of-00002.safetensors"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert refused(root, expected, "digest_mismatch").path in (a.name, b.name)


def test_extra_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    (root / "sneaky.bin").write_bytes(pickle.dumps({"x": 1}))
    assert refused(root, expected, "extra_file").path == "sneaky.bin"
    # allowed extras are not read at all (this one is a pickle)
    assert "sneaky.bin" not in read_verified(root, expected, allow_extra_files=["sneaky.bin"]).files
    # a directory entry allows what lies under it, e.g. huggingface_hub's download metadata
    (root / "sneaky.bin").unlink()
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "config.json.metadata").write_text("abc\n")
    refused(root, expected, "extra_file")
    assert (
        ".cache/huggingface/config.json.metadata"
        not in read_verified(root, expected, allow_extra_files=[".cache/"]).files
    )


def test_missing_file_is_refused(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    (root / "tokenizer" / "vocab.txt").unlink()
    assert refused(root, expected, "missing_file").path == "tokenizer/vocab.txt"


def test_symlink_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (root / "config.json").unlink()
    (root / "config.json").symlink_to(secret)
    assert "outside" in refused(root, expected, "unsafe_tree").reason


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    os.mkfifo(root / "pipe")
    refused(root, {**expected, "pipe": expected["config.json"]}, "unsafe_tree")


def test_duplicate_tensor_names_across_shards(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    save_file({"w": torch.ones(2)}, root / "a.safetensors")
    save_file({"w": torch.zeros(2)}, root / "b.safetensors")
    error = refused(root, digests(root), "duplicate_tensor")
    assert "'w'" in error.reason


def _live_tensor_bytes() -> int:
    return sum(o.untyped_storage().nbytes() for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.parametrize("workers", [1, 2])
def test_failure_keeps_nothing_alive(tmp_path: Path, workers: int) -> None:
    """A refused load frees what it read (device memory, on a GPU) at once, even while the caller holds the error."""
    root = tmp_path / "m"
    root.mkdir()
    save_file({"big": torch.ones(1 << 20)}, root / "a.safetensors")
    save_file({"small": torch.ones(1000)}, root / "b.safetensors")
    expected = digests(root)
    (root / "b.safetensors").write_bytes((root / "b.safetensors").read_bytes()[:-4] + b"evil")
    gc.collect()
    gc.disable()  # freed by reference counting, not by a later collection
    try:
        before = _live_tensor_bytes()
        with pytest.raises(VerifiedLoadError) as info:
            read_verified(root, expected, workers=workers, chunk_size=1 << 16)
        after = _live_tensor_bytes()
    finally:
        gc.enable()
    assert info.value.path == "b.safetensors"
    assert after == before


@pytest.mark.parametrize(
    "digest",
    [
        "md5:" + "0" * 32,
        "SHA256:" + "0" * 64,
        "sha256:" + "A" * 64,
        "sha512:" + "0" * 128,
        "0" * 64,
        "sha256:" + "0" * 63,
    ],
)
def test_bad_expected_digest_is_refused(tmp_path: Path, digest: str) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    expected["config.json"] = digest
    assert refused(root, expected, "bad_expected").path == "config.json"


@pytest.mark.parametrize("path", ["../config.json", "/etc/passwd", "a//b", "a\\b", ""])
def test_bad_expected_path_is_refused(tmp_path: Path, path: str) -> None:
    root = write_model(tmp_path / "m")
    refused(root, {**digests(root), path: "sha256:" + "0" * 64}, "bad_expected")


def test_api_misuse_is_a_value_error(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    with pytest.raises(ValueError, match="workers"):
        read_verified(root, digests(root), workers=0)
    with pytest.raises(ValueError, match="allow_data_files"):
        read_verified(root, digests(root), allow_data_files=["nope.bin"])
    with pytest.raises(ValueError, match="dtype"):
        read_verified(root, digests(root), dtype="float16")  # type: ignore[arg-type]


# -- pickle and other formats --------------------------------------------------------------------------------------
def _torch_save(obj: object, legacy: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("model.safetensors", lambda: _torch_save({"w": torch.ones(3)})),
        ("pytorch_model.bin", lambda: _torch_save({"w": torch.ones(3)})),
        ("pytorch_model.bin", lambda: _torch_save({"w": torch.ones(3)}, legacy=True)),
        ("model.safetensors", lambda: pickle.dumps({"w": [1, 2]}, protocol=4)),
        ("training_args.bin", lambda: pickle.dumps({"lr": 1e-3}, protocol=2)),
        ("notes.txt", lambda: b"cos\nsystem\n(S'echo hi'\ntR."),  # protocol 0: a pickle that is also text
        ("weights.pkl.gz", lambda: gzip.compress(pickle.dumps([1, 2, 3]))),
    ],
)
@pytest.mark.parametrize("allow", [False, True])
def test_pickle_formats_are_refused(tmp_path: Path, name: str, make: Callable[[], bytes], allow: bool) -> None:
    root, expected = one_file(tmp_path, name, make())
    error = refused(root, expected, "pickle_refused", allow_data_files=[name] if allow else [])
    assert error.path == name
    assert "pickle formats are refused" in error.reason


@pytest.mark.parametrize("text", [b"This model card starts with T.\n", b"a\nb\nc\n", b"(parenthetical)", b""])
def test_text_starting_like_a_pickle_is_still_text(tmp_path: Path, text: bytes) -> None:
    root, expected = one_file(tmp_path, "vocab.txt", text)
    assert read_verified(root, expected).files == {"vocab.txt": "text"}


def test_text_named_safetensors_is_refused(tmp_path: Path) -> None:
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123\n"
    root, expected = one_file(tmp_path, "model.safetensors", pointer)
    assert "Git LFS" in refused(root, expected, "unknown_format").reason


def test_binary_after_a_text_prefix_is_not_text(tmp_path: Path) -> None:
    root, expected = one_file(tmp_path, "tokenizer.json", b'{"a": 1}' + b"\x00\x01\x02" * 3000)
    refused(root, expected, "unknown_format")


# -- malformed safetensors -----------------------------------------------------------------------------------------
def _entry(dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None) -> dict[str, object]:
    return {"dtype": dtype, "shape": [2] if shape is None else shape, "data_offsets": offsets or [0, 8]}


MALFORMED: dict[str, bytes] = {
    "huge header length": raw_safetensors(b'{"a":1}', length=2**39),
    "header past end of file": raw_safetensors(b'{"a": {}}', length=500),
    "bad JSON": raw_safetensors(b'{"w": {"dtype": "F32",', b"\0" * 8),
    "not UTF-8": raw_safetensors(b'{"\xff": 1}'),
    "deep nesting": raw_safetensors(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "NaN constant": raw_safetensors(b'{"w": NaN}'),
    "duplicate key": raw_safetensors(b'{"w": %s, "w": %s}' % ((json.dumps(_entry()).encode(),) * 2), b"\0" * 8),
    "unknown dtype": raw_safetensors({"w": _entry(dtype="F128")}, b"\0" * 8),
    "sub-byte dtype": raw_safetensors({"w": _entry(dtype="F4", shape=[16])}, b"\0" * 8),
    "negative dim": raw_safetensors({"w": _entry(shape=[-2])}, b"\0" * 8),
    "bool dim": raw_safetensors({"w": _entry(shape=[True, 2])}, b"\0" * 8),
    "offsets out of range": raw_safetensors({"w": _entry(offsets=[0, 4096])}, b"\0" * 8),
    "offsets reversed": raw_safetensors({"w": _entry(offsets=[8, 0])}, b"\0" * 8),
    "size mismatch": raw_safetensors({"w": _entry(shape=[3])}, b"\0" * 8),
    "overlap": raw_safetensors({"a": _entry(), "b": _entry(offsets=[4, 12])}, b"\0" * 12),
    "gap": raw_safetensors({"a": _entry(offsets=[4, 12])}, b"\0" * 12),
    "trailing data": raw_safetensors({"a": _entry()}, b"\0" * 8 + b"hidden"),
    "extra entry key": raw_safetensors({"w": {**_entry(), "note": "x"}}, b"\0" * 8),
    "entry not an object": raw_safetensors({"w": [1, 2]}),
    "metadata not strings": raw_safetensors({"__metadata__": {"n": 1}}),
    "bool value 2": raw_safetensors({"b": _entry(dtype="BOOL", shape=[2], offsets=[0, 2])}, b"\x01\x02"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_safetensors_get_a_clear_error(tmp_path: Path, case: str) -> None:
    root, expected = one_file(tmp_path, "model.safetensors", MALFORMED[case])
    error = refused(root, expected, "malformed_safetensors")
    assert error.path == "model.safetensors"
    assert error.reason.startswith("malformed safetensors: ")


def test_header_length_with_high_bytes_is_an_unknown_format(tmp_path: Path) -> None:
    root, expected = one_file(tmp_path, "model.safetensors", raw_safetensors(b'{"a":1}', length=2**63 + 7))
    refused(root, expected, "unknown_format")


_DTYPE_NAMES = ["F32", "F16", "BF16", "I8", "U8", "BOOL", "I64", "F64", "C64", "F8_E5M2", "F4", "X"]
_entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(_DTYPE_NAMES),
        "shape": st.lists(st.integers(-1, 5), max_size=3),
        "data_offsets": st.lists(st.integers(-1, 64), min_size=0, max_size=3),
    }
)
_headers = st.dictionaries(st.text(max_size=4), _entries | st.integers() | st.text(max_size=3), max_size=4)


@FUZZ
@given(header=_headers, data_size=st.integers(0, 64))
def test_header_parser_accepts_only_exact_tilings(header: dict[str, object], data_size: int) -> None:
    try:
        layout = parse_safetensors_header(json.dumps(header).encode(), data_size)
    except SafetensorsHeaderError:
        return
    position = 0
    for spec in layout.tensors:
        assert spec.begin == position
        position = spec.end
    assert position == data_size


@FUZZ
@given(blob=st.binary(max_size=300), data_size=st.integers(0, 1 << 20))
def test_header_parser_never_crashes_on_bytes(blob: bytes, data_size: int) -> None:
    with contextlib.suppress(SafetensorsHeaderError):
        parse_safetensors_header(blob, data_size)


_VALID = save(
    {"a": torch.arange(6, dtype=torch.int16).reshape(2, 3), "b": torch.tensor([True, False]), "c": torch.ones(2)}
)


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, len(_VALID)),
    tail=st.binary(max_size=8),
)
def test_mutated_files_load_like_the_reference_or_fail_cleanly(
    tmp_path: Path, flips: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    blob = bytearray(_VALID)
    for at, value in flips:
        blob[at] = value
    data = bytes(blob[:cut]) + tail
    root, expected = one_file(tmp_path, "model.safetensors", data)
    try:
        got = read_verified_safetensors(root, expected, workers=1)
    except VerifiedLoadError:
        return
    assert_same(got, st_load(data))  # whatever we accept, the reference library reads identically


# -- time of check, time of use -----------------------------------------------------------------------------------
def _two_versions(tmp_path: Path, size_mb: int = 8) -> tuple[Path, Path, bytes, bytes]:
    """A model dir and two same-size, same-header contents: A (verified) and B (the attacker's)."""
    root = tmp_path / "m"
    root.mkdir()
    n = size_mb * (1 << 20) // 4
    a = save({"w": torch.zeros(n), "v": torch.arange(1000, dtype=torch.float32)})
    b = save({"w": torch.ones(n), "v": torch.arange(1000, dtype=torch.float32)})
    assert len(a) == len(b) and a[:100] == b[:100]
    target = root / "model.safetensors"
    target.write_bytes(a)
    return root, target, a, b


def test_tensors_do_not_follow_later_writes(tmp_path: Path) -> None:
    """Returned tensors are our copy, not a mapping of the file: rewriting it in place changes nothing."""
    root, target, a, b = _two_versions(tmp_path, size_mb=1)
    got = read_verified_safetensors(root, digests(root))
    with open(target, "r+b") as handle:  # same inode, so an mmap of it would see this
        handle.write(b)
    assert_same(got, st_load(a))


def test_concurrent_rewrites_never_yield_unverified_tensors(tmp_path: Path) -> None:
    """A writer flips the file between A, B and a truncated copy while we load; we get A or an error."""
    root, target, a, b = _two_versions(tmp_path)
    expected = digests(root)
    want = st_load(a)
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        with open(target, "r+b") as handle:
            while not stop.is_set():
                for content in (b, a[: len(a) // 2], a):
                    handle.seek(0)
                    handle.write(content)
                    handle.truncate(len(content))
                    handle.flush()
                    writes += 1

    thread = threading.Thread(target=writer)
    thread.start()
    outcomes = []
    try:
        for _ in range(12):
            try:
                got = read_verified_safetensors(root, expected, workers=2)
            except VerifiedLoadError as exc:
                assert exc.code in ("digest_mismatch", "changed", "malformed_safetensors"), str(exc)
                outcomes.append(exc.code)
            else:
                assert_same(got, want)
                outcomes.append("A")
    finally:
        stop.set()
        thread.join()
    assert writes > 0
    assert len(outcomes) == 12


def _swap_on_reopen_main(root: str, evil: str) -> None:
    """Run in a child process (audit hooks cannot be removed): an attacker who swaps the file's content
    in place whenever it is opened a second time, i.e. between a hash pass and a load pass."""
    from registry.client.verified_read import read_verified_safetensors as verified
    from signing.hashing import hash_file as hash_one

    target = os.path.realpath(os.path.join(root, "model.safetensors"))
    evil_bytes = Path(evil).read_bytes()
    state = {"armed": False, "opens": 0, "mmaps": 0}

    def hook(event: str, args: tuple[object, ...]) -> None:
        if not state["armed"]:
            return
        if event == "open" and isinstance(args[0], str) and os.path.realpath(args[0]) == target:
            state["opens"] += 1
            if state["opens"] >= 2:
                state["armed"] = False
                fd = os.open(target, os.O_WRONLY)
                os.write(fd, evil_bytes)
                os.close(fd)
                state["armed"] = True
        elif event == "mmap.__new__":
            state["mmaps"] += 1

    sys.addaudithook(hook)
    good = Path(target).read_bytes()
    expected = {"model.safetensors": hash_one(target)}

    def naive() -> dict[str, torch.Tensor]:  # hash, then load: two opens
        assert hash_one(target) == expected["model.safetensors"]
        return st_load(Path(target).read_bytes())

    report = {}
    for name, loader in (("naive", naive), ("verified", lambda: verified(root, expected, workers=1))):
        Path(target).write_bytes(good)
        state.update(armed=True, opens=0, mmaps=0)
        try:
            tensors = loader()
            outcome = "good" if torch.equal(tensors["w"], st_load(good)["w"]) else "EVIL"
        except LoaderError as exc:
            outcome = f"error: {exc}"
        state["armed"] = False
        report[name] = {"outcome": outcome, "opens": state["opens"], "mmaps": state["mmaps"]}
    print(json.dumps(report))


def test_single_read_defeats_a_swap_between_check_and_use(tmp_path: Path) -> None:
    """Deterministic TOCTOU: the adversary rewrites the file at the moment it is opened again.

    A hash-then-load loader opens the file twice and loads the attacker's tensors under the
    verified digest (checked below, so the adversary is proven effective); ours opens it once,
    never maps it, and loads exactly what it hashed.
    """
    root, _target, _a, b = _two_versions(tmp_path, size_mb=1)
    evil = tmp_path / "evil.bin"
    evil.write_bytes(b)
    code = "import sys; from tests.registry.test_verified_read import _swap_on_reopen_main as m; m(*sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root), str(evil)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["naive"]["outcome"] == "EVIL"
    assert report["verified"] == {"outcome": "good", "opens": 1, "mmaps": 0}


# -- optional torch ------------------------------------------------------------------------------------------------
def test_module_imports_without_torch(tmp_path: Path) -> None:
    root, expected = one_file(tmp_path, "config.json", b"{}")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import registry.client.verified_read as v\n"
        "try:\n"
        f"    v.read_verified({str(root)!r}, {expected!r})\n"
        "except v.LoaderError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "needs torch" in proc.stdout


# -- GPU -----------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_cuda_round_trip_equals_load_file(tmp_path: Path, algorithm: str) -> None:
    root = write_model(tmp_path / "m", shards=3)
    got = read_verified_safetensors(root, digests(root, algorithm), device="cuda")
    assert all(t.device.type == "cuda" for t in got.values())
    want = {}
    for path in sorted(root.glob("*.safetensors")):
        want.update(load_file(path, device="cuda"))
    assert_same(got, {k: v.cpu() for k, v in want.items()})


@pytest.mark.gpu
@cuda
def test_cuda_small_chunks_and_cast(tmp_path: Path) -> None:
    tensors = {f"t{i}": torch.randn(100 + i).to(torch.bfloat16) for i in range(300)}
    root = tmp_path / "m"
    root.mkdir()
    save_file(tensors, root / "model.safetensors")
    got = read_verified(root, digests(root), device="cuda", chunk_size=4096, workers=2).tensors
    assert_same(got, tensors)
    cast = read_verified_safetensors(root, digests(root), device="cuda:0", dtype=torch.float16)
    assert cast["t0"].dtype == torch.float16 and cast["t0"].is_cuda


@pytest.mark.gpu
@cuda
def test_cuda_tampered_file_is_refused(tmp_path: Path) -> None:
    root = write_model(tmp_path / "m")
    expected = digests(root)
    target = root / "model-00001-of-00002.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(data)
    before = torch.cuda.memory_allocated()
    with pytest.raises(VerifiedLoadError) as info:
        read_verified(root, expected, device="cuda", chunk_size=4096)
    assert info.value.code == "digest_mismatch"
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before  # nothing of the refused file stays on the device
