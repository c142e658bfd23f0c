"""ONNX models: read from the protobuf wire format by hand, never loaded (no ``onnx.load``, no runtime).

Good models are built with ``onnx.helper`` (so the reader is checked against the real serializer);
hostile wire formats are written byte by byte.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from scanners import Limits, Report, Verdict, scan_bytes, scan_path
from scanners.sniff import SNIFF_BYTES, Kind, sniff


def mlp(*extra_nodes: onnx.NodeProto, opsets: tuple[tuple[str, int], ...] = ()) -> onnx.ModelProto:
    """x @ W + B -> Relu -> (If: Identity | Neg), with a Constant node: a small but realistic model."""
    weights = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "B")
    branch = {
        name: helper.make_graph([helper.make_node(op, ["y"], [f"{name}_out"])], name, [],
                                [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["N", 3])])
        for name, op in (("then", "Identity"), ("else", "Neg"))
    }  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["y"]),
        helper.make_node("Constant", [], ["flag"], value=numpy_helper.from_array(np.array(True), "c")),
        helper.make_node("If", ["flag"], ["out"], then_branch=branch["then"], else_branch=branch["else"]),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])], [weights, bias],
    )  # fmt: skip
    imports = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, v) for d, v in opsets)]
    return helper.make_model(graph, opset_imports=imports, producer_name="mir-tests")


def external(model: onnx.ModelProto, **entries: str) -> bytes:
    """Move initializer W's data out of the file, with these external_data entries."""
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def scan(data: bytes, limits: Limits | None = None) -> Report:
    report = scan_bytes(data, limits=limits)
    assert not any("internal scanner error" in f.message for f in report.findings), report.findings
    return report


# -- wire-format helpers for hand-made messages ------------------------------------------------------------------
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, body: bytes | int) -> bytes:
    if isinstance(body, int):
        return varint(number << 3) + varint(body)
    return varint(number << 3 | 2) + varint(len(body)) + body


HEADER = field(1, 9) + field(2, b"hand")


# -- good models ---------------------------------------------------------------------------------------------------
def test_a_normal_model_is_clean_and_detected_by_content(tmp_path: Path) -> None:
    model = mlp()
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    assert sniff(data[:SNIFF_BYTES], len(data)) is Kind.ONNX
    path = tmp_path / "weights.dat"
    path.write_bytes(data)
    report = scan_path(path)
    assert (report.verdict, report.format) == (Verdict.CLEAN, "onnx"), report.findings


def test_well_known_domains_and_local_functions_are_not_custom_ops() -> None:
    fn = helper.make_function("local.fns", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])  # fmt: skip
    model = mlp(
        helper.make_node("Gelu", ["y"], ["g"], domain="com.microsoft"),
        helper.make_node("Double", ["g"], ["d"], domain="local.fns"),
        opsets=(("com.microsoft", 1), ("local.fns", 1)),
    )
    model.functions.append(fn)
    report = scan(model.SerializeToString())
    assert report.verdict is Verdict.CLEAN, report.findings


def test_external_data_inside_the_model_directory_is_clean() -> None:
    data = external(mlp(), location="weights/model.bin", offset="0", length="48")
    assert scan(data).verdict is Verdict.CLEAN


def test_a_compressed_model_is_read_as_a_stream() -> None:
    report = scan(gzip.compress(external(mlp(), location="../../../etc/shadow")))
    assert (report.verdict, report.format) == (Verdict.MALICIOUS, "gzip:onnx")


# -- hostile models ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "location",
    ["../secrets.bin", "/etc/passwd", "weights/../../x", "C:\\Windows\\win.ini", "..\\..\\x", "\\\\host\\share\\x",
     "~/.ssh/id_rsa", "ok.bin\0../../x"],
)  # fmt: skip
def test_external_data_that_leaves_the_model_directory_is_malicious(location: str) -> None:
    report = scan(external(mlp(), location=location))
    assert report.verdict is Verdict.MALICIOUS, report.findings
    assert "outside the model's directory" in report.findings[0].message


def test_external_data_in_a_subgraph_tensor_is_checked() -> None:
    model = mlp()
    constant = model.graph.node[3].attribute[0].t
    constant.ClearField("raw_data")
    constant.data_location = TensorProto.EXTERNAL
    entry = constant.external_data.add()
    entry.key, entry.value = "location", "/proc/self/environ"
    assert scan(model.SerializeToString()).verdict is Verdict.MALICIOUS


@pytest.mark.parametrize(
    "entries,words",
    [
        ({"location": "w.bin", "offset": "-4096"}, "offset '-4096'"),
        ({"location": "w.bin", "length": "99999999999999999999"}, "length '99999999999999999999'"),
        ({"location": "w.bin", "offset": "lots"}, "offset 'lots'"),
        ({"offset": "0"}, "names no file"),
    ],
)
def test_odd_external_data_is_suspicious(entries: dict[str, str], words: str) -> None:
    report = scan(external(mlp(), **entries))
    assert report.verdict is Verdict.SUSPICIOUS, report.findings
    assert words in report.findings[0].message


def test_custom_operator_domains_are_suspicious_and_named() -> None:
    model = mlp(helper.make_node("Backdoor", ["y"], ["z"], domain="com.example.native"),
                opsets=(("com.example.native", 1),))  # fmt: skip
    report = scan(model.SerializeToString())
    assert report.verdict is Verdict.SUSPICIOUS
    (finding,) = report.findings
    assert finding.symbol == "com.example.native" and "Backdoor" in finding.message


def test_a_custom_opset_import_alone_is_suspicious() -> None:
    report = scan(mlp(opsets=(("ai.onnx.contrib", 1),)).SerializeToString())
    assert report.verdict is Verdict.SUSPICIOUS and "ai.onnx.contrib" in report.findings[0].message


def test_impossible_shapes_are_suspicious() -> None:
    model = mlp()
    model.graph.initializer[1].dims[:] = [-3]
    assert "impossible shape [-3]" in scan(model.SerializeToString()).findings[0].message
    model = mlp()
    model.graph.initializer[1].dims[:] = [2**40, 2**40]
    assert scan(model.SerializeToString()).verdict is Verdict.SUSPICIOUS


def test_raw_data_that_does_not_match_its_shape_is_suspicious() -> None:
    model = mlp()
    model.graph.initializer[1].raw_data += b"hidden payload"
    report = scan(model.SerializeToString())
    assert report.verdict is Verdict.SUSPICIOUS and "raw_data has 26 bytes" in report.findings[0].message


# -- hostile wire format -------------------------------------------------------------------------------------------
def nested_graphs(depth: int) -> bytes:
    graph = b""
    for _ in range(depth):
        attribute = field(1, b"then_branch") + field(6, graph)
        graph = field(1, field(4, b"If") + field(5, attribute))
    return HEADER + field(7, graph)


@pytest.mark.parametrize(
    "data,words",
    [
        (HEADER + field(7, b"\x0a\xff\xff\xff\x0f"), "runs past the end"),
        (HEADER + b"\x3a" + b"\xff" * 11, "varint longer than 10 bytes"),
        (HEADER + b"\x3a\x80", "data ends inside a varint"),
        (HEADER + field(7, b"\x0b\x00"), "unsupported wire type 3"),
        (HEADER + field(7, field(1, field(7, 5))), "wrong wire type"),
        (HEADER + field(7, field(5, field(1, bytes(10) * 7))), "more than 64 dims"),
        (HEADER + field(7, field(1, field(7, b"d" * 70_000))), "longer than 65536"),
        (nested_graphs(80), "nested deeper than 100"),
    ],
)
def test_broken_wire_format_is_an_error(data: bytes, words: str) -> None:
    assert sniff(data[:SNIFF_BYTES], len(data)) is Kind.ONNX
    report = scan(data)
    assert report.verdict is Verdict.ERROR, report.findings
    assert any(words in f.message for f in report.findings), report.findings


def test_nesting_within_the_limit_is_read() -> None:
    assert scan(nested_graphs(20)).verdict is Verdict.CLEAN


def test_the_field_limit_applies() -> None:
    data = mlp().SerializeToString()
    assert scan(data, Limits(max_metadata_items=20)).verdict is Verdict.ERROR


@pytest.mark.parametrize("cut", [5, 30, 80, 150, -20, -1])
def test_truncated_models_are_errors(cut: int) -> None:
    data = mlp().SerializeToString()[:cut]
    assert sniff(data[:SNIFF_BYTES], len(data)) is Kind.ONNX
    assert scan(data).verdict is Verdict.ERROR


@pytest.mark.parametrize("data", [b"\x08\x00\x12\x01a", b"\x08\x03\x99\x01", b"\x08\x03" + b"\x00" * 30])
def test_look_alike_bytes_are_not_onnx(data: bytes) -> None:
    assert sniff(data, len(data)) is not Kind.ONNX


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(min_value=2, max_value=10_000), value=st.integers(min_value=0, max_value=255))
def test_mutated_models_never_crash_the_scanner(pos: int, value: int) -> None:
    data = bytearray(mlp().SerializeToString())
    data[pos % len(data)] = value
    scan(bytes(data))
