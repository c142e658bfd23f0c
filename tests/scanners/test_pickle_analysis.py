"""The static pickle analyser: globals, memo, calls, nested payloads, joblib arrays, legacy torch."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from scanners import Limits, Verdict, scan_bytes, scan_path
from scanners.globals_policy import classify, fix_imports, trust_refusal
from scanners.pickle_ops import FAMILIES, VALID_OPCODES
from tests.scanners.corpus import (
    P,
    Reduce,
    call_pickle,
    global0,
    joblib_bytes,
    os_system_pickle,
    su,
    torch_bytes,
)


# -- the policy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module,name",
    [
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch", "FloatStorage"),
        ("torch", "bfloat16"),
        ("collections", "OrderedDict"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.dtypes", "Float64DType"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("torch.nn.parameter", "Parameter"),
    ],
)
def test_allowlisted_globals_are_clean(module: str, name: str) -> None:
    assert classify(module, name).verdict is Verdict.CLEAN


@pytest.mark.parametrize(
    "module,name",
    [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("__builtin__", "eval"),
        ("__builtins__", "exec"),
        ("runpy", "run_path"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("dill", "loads"),
        ("marshal", "loads"),
        ("types", "CodeType"),
        ("operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("functools", "partial"),
        ("torch", "load"),
        ("torch.hub", "load"),
        ("numpy", "load"),
        ("os.path", "join"),
        ("torch.serialization", "os.system"),
        ("collections", "OrderedDict.__init__.__globals__"),
        ("somepkg", "helper.system"),
        ("webbrowser", "open"),
        ("shutil", "rmtree"),
        ("socket", "socket"),
        ("ctypes", "CDLL"),
        ("importlib", "import_module"),
        ("pty", "spawn"),
        ("sys", "modules"),
    ],
)
def test_gadgets_are_malicious(module: str, name: str) -> None:
    c = classify(module, name)
    assert c.verdict is Verdict.MALICIOUS, c
    assert c.reason


@pytest.mark.parametrize(
    "module,name,hint",
    [
        ("sklearn.preprocessing._function_transformer", "FunctionTransformer", "scikit-learn"),
        ("__main__", "MyModel", "__main__"),
        ("torch.nn.modules.linear", "Linear", "PyTorch"),
        ("builtins", "print", "allowlist"),
        ("mypkg", "Outer.Inner", "dotted"),
    ],
)
def test_unknown_globals_are_suspicious_with_a_reason(module: str, name: str, hint: str) -> None:
    c = classify(module, name)
    assert c.verdict is Verdict.SUSPICIOUS
    assert hint in c.reason


def test_python2_names_are_mapped_like_the_unpickler() -> None:
    assert fix_imports("__builtin__", "set") == ("builtins", "set")
    assert fix_imports("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    assert fix_imports("__builtin__", "reduce") == ("functools", "reduce")


def test_protocol2_builtin_names_are_clean_but_not_under_protocol4() -> None:
    p2 = P.PROTO + b"\x02" + global0("__builtin__", "set") + P.EMPTY_LIST + P.TUPLE1 + P.REDUCE + P.STOP
    assert scan_bytes(p2).verdict is Verdict.CLEAN
    assert scan_bytes(pickle.dumps({1, 2}, protocol=2)).verdict is Verdict.CLEAN
    p4 = P.PROTO + b"\x04" + global0("__builtin__", "set") + P.EMPTY_LIST + P.TUPLE1 + P.REDUCE + P.STOP
    assert scan_bytes(p4).verdict is Verdict.SUSPICIOUS  # Python 3 fails to import it; never clean


# -- findings ---------------------------------------------------------------------------------------------
def test_finding_names_symbol_offset_and_how_it_is_used() -> None:
    data = os_system_pickle(2)
    report = scan_bytes(data)
    (f,) = report.findings
    assert f.symbol == "posix.system"
    assert f.offset == data.index(b"cposix")
    assert "REDUCE" in f.message and "GLOBAL" in f.message
    assert f.member is None


def test_each_global_is_reported_once_with_a_count() -> None:
    body = b"".join(global0("builtins", "print") + su("x") + P.TUPLE1 + P.REDUCE + P.POP for _ in range(5))
    report = scan_bytes(P.PROTO + b"\x02" + body + P.NONE + P.STOP)
    assert len(report.findings) == 1
    assert "5 uses" in report.findings[0].message


def test_memo_values_resolve_stack_global_names() -> None:
    data = (
        P.PROTO + b"\x04" + su("subprocess") + P.BINPUT + b"\x05" + su("run") + P.LONG_BINPUT
        + struct.pack("<I", 70000) + P.POP + P.POP + P.BINGET + b"\x05" + P.LONG_BINGET + struct.pack("<I", 70000)
        + P.STACK_GLOBAL + P.STOP
    )  # fmt: skip
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert report.findings[0].symbol == "subprocess.run"


def test_protocol0_get_put_and_unicode_names() -> None:
    data = b"Vos\np0\n0Vsystem\np1\n0g0\ng1\n\x93(Vtrue\ntR."
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS, report.findings


def test_computed_stack_global_is_malicious() -> None:
    data = P.PROTO + b"\x04" + global0("builtins", "str") + P.EMPTY_TUPLE + P.REDUCE + su("system") + P.STACK_GLOBAL
    report = scan_bytes(data + P.STOP)
    assert report.verdict is Verdict.MALICIOUS
    assert any("computed import" in f.message for f in report.findings)


def test_calling_a_computed_object_is_flagged() -> None:
    data = (
        P.PROTO + b"\x02" + global0("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.EMPTY_TUPLE
        + P.REDUCE + P.STOP
    )  # fmt: skip
    report = scan_bytes(data)
    assert report.verdict is Verdict.SUSPICIOUS
    assert any("computed callable" in f.message for f in report.findings)


def test_mutating_an_imported_object_is_malicious() -> None:
    data = P.PROTO + b"\x02" + global0("collections", "OrderedDict") + su("k") + su("v") + P.SETITEM + P.STOP
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


def test_nested_pickle_findings_are_reported_with_their_own_member() -> None:
    inner = call_pickle("builtins", "print", "hi")
    data = pickle.dumps(Reduce(pickle.loads, (inner,)), protocol=4)
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    nested = [f for f in report.findings if f.member and f.member.startswith("nested@")]
    assert [f.symbol for f in nested] == ["builtins.print"]


def test_nested_payload_that_cannot_be_resolved_is_malicious() -> None:
    data = P.PROTO + b"\x02" + global0("pickle", "loads") + P.NONE + P.TUPLE1 + P.REDUCE + P.STOP
    report = scan_bytes(data)
    assert any("cannot be resolved" in f.message for f in report.findings)


def test_nested_pickles_stop_at_the_depth_limit() -> None:
    data = os_system_pickle(2)
    for _ in range(10):
        data = pickle.dumps(Reduce(pickle.loads, (data,)), protocol=4)
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any(f.severity is Verdict.ERROR and "nesting" in f.message for f in report.findings)


def test_large_nested_payload_is_reread_from_the_file(tmp_path: Path) -> None:
    evil = os_system_pickle(2) + b" " * 0  # a nested payload larger than the inline limit below
    data = P.PROTO + b"\x04" + global0("pickle", "loads") + b"\x8e" + struct.pack("<Q", len(evil)) + evil
    path = tmp_path / "x.pkl"
    path.write_bytes(data + P.TUPLE1 + P.REDUCE + P.STOP)
    report = scan_path(path, limits=Limits(max_inline_value=8))
    assert any(f.symbol == "posix.system" and "nested@" in (f.member or "") for f in report.findings)


def test_huge_bytes_are_skipped_not_read(tmp_path: Path) -> None:
    blob = b"\0" * (8 << 20)
    data = pickle.dumps({"blob": blob, "w": [1.0]}, protocol=4)
    path = tmp_path / "big.pkl"
    path.write_bytes(data)
    assert scan_path(path, limits=Limits(max_inline_value=1024)).verdict is Verdict.CLEAN


def test_concatenated_pickles_are_all_scanned() -> None:
    benign = pickle.dumps([1, 2, 3], protocol=2)
    assert scan_bytes(benign + benign).verdict is Verdict.CLEAN
    report = scan_bytes(benign + benign + os_system_pickle(4))
    assert report.verdict is Verdict.MALICIOUS
    assert report.findings[0].offset is not None and report.findings[0].offset > 2 * len(benign)


def test_trailing_non_pickle_data_is_suspicious() -> None:
    report = scan_bytes(pickle.dumps([1], protocol=2) + b"\x00\x01garbage")
    assert report.verdict is Verdict.SUSPICIOUS


def test_trailing_broken_pickle_is_an_error() -> None:
    report = scan_bytes(pickle.dumps([1], protocol=2) + b"\x80\x02(")
    assert report.verdict is Verdict.ERROR


@pytest.mark.parametrize(
    "data,why",
    [
        (b"\x80\x04", "without a STOP"),
        (b"\x80\x06N.", "protocol 6"),
        (b"\x80\x02\xff.", "invalid pickle opcode"),
        (b"\x80\x02h\x01.", "memo key 1"),
        (b"\x80\x02R.", "underflow"),
        (b"\x80\x02e.", "MARK not found"),
        (b"\x80\x02X\xff\xff\xff\xffab.", "ends inside BINUNICODE"),
        (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "invalid UTF-8"),
        (b"\x80\x02(K\x01u.", "odd number"),
        (b"\x80\x02cos\nsys", "no newline"),
    ],
)
def test_malformed_pickles_are_errors_with_a_reason(data: bytes, why: str) -> None:
    report = scan_bytes(data)
    assert report.verdict is Verdict.ERROR
    assert any(why in f.message for f in report.findings), report.findings


def test_truncated_malicious_pickle_keeps_its_findings() -> None:
    data = os_system_pickle(2)
    report = scan_bytes(data[:-1])
    assert report.verdict is Verdict.MALICIOUS
    assert any(f.severity is Verdict.ERROR for f in report.findings)


def test_text_that_starts_like_a_pickle_gadget_is_malicious() -> None:
    assert scan_bytes(b"cos\nsystem\n(S'true'\ntR").verdict is Verdict.MALICIOUS
    assert scan_bytes(b"cat\ndog\nsome notes\n").verdict is Verdict.CLEAN
    assert scan_bytes(b"(a) list item\n(b) another\n").verdict is Verdict.CLEAN


def test_out_of_band_buffers_alone_are_clean() -> None:
    """NEXT_BUFFER names no code: the loader supplies the bytes (see test_sklearn_allowlist for ndarrays)."""
    assert scan_bytes(b"\x80\x05\x97.").verdict is Verdict.CLEAN


# -- frames ----------------------------------------------------------------------------------------------
def _framed(body: bytes, declared: int) -> bytes:
    return P.PROTO + b"\x05" + P.FRAME + struct.pack("<Q", declared) + body


def test_frames_as_cpython_writes_them_are_clean() -> None:
    """Large bytes go between frames, long data spans several: none of it crosses a frame boundary."""
    for obj in ([1, 2, 3], b"x" * 100_000, [1, b"y" * 100_000, 2], list(range(200_000)), {"a": [1, (2, 3)]}):
        for protocol in (4, 5):
            report = scan_bytes(pickle.dumps(obj, protocol=protocol))
            assert (report.verdict, report.findings) == (Verdict.CLEAN, []), (obj, protocol)


@pytest.mark.parametrize(
    "data",
    [
        _framed(P.BINBYTES + struct.pack("<I", 20) + b"A" * 20 + P.STOP, 5),
        _framed(P.SHORT_BINUNICODE + b"\x14" + b"A" * 20 + P.STOP, 3),
        _framed(P.BININT + struct.pack("<i", 7) + P.STOP, 2),
        _framed(P.UNICODE + b"hello world\n" + P.STOP, 5),
        _framed(P.NONE + P.FRAME + struct.pack("<Q", 2) + P.NONE + P.STOP, 30),
        _framed(P.NONE + P.STOP + b"hidden", 8),
    ],
    ids=["BINBYTES", "SHORT_BINUNICODE", "BININT", "UNICODE line", "FRAME in a frame", "STOP inside a frame"],
)
def test_a_pickle_that_crosses_its_frame_boundary_is_suspicious(data: bytes) -> None:
    """Loaders disagree on these (the pure-Python unpickler refuses them, older C ones read on): a scanner that
    ignores frames can read other opcodes than the loader runs."""
    report = scan_bytes(data)
    assert report.verdict is Verdict.SUSPICIOUS, report.findings
    assert any("frame-boundary evasion" in f.message for f in report.findings)


def test_a_payload_behind_a_frame_violation_is_still_malicious() -> None:
    report = scan_bytes(_framed(P.NONE + P.POP + os_system_pickle(2)[2:], 3))
    assert report.verdict is Verdict.MALICIOUS
    assert any("frame-boundary evasion" in f.message for f in report.findings)


# -- joblib ----------------------------------------------------------------------------------------------
def test_joblib_interleaved_arrays_are_delimited() -> None:
    data = joblib_bytes({"a": np.arange(100.0), "u": np.array(["ab", "c"]), "s": np.zeros(2, "i4,f8"),
                         "f": np.asfortranarray(np.ones((3, 4)))})  # fmt: skip
    report = scan_bytes(data)
    assert (report.verdict, report.format) == (Verdict.CLEAN, "joblib")


def test_joblib_payload_after_arrays_is_found() -> None:
    data = joblib_bytes({"a": np.arange(1000.0), "x": Reduce(os.system, ("true",))})
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS


def test_truncated_joblib_array_is_an_error() -> None:
    data = joblib_bytes({"a": np.arange(1000.0)})
    assert scan_bytes(data[: len(data) // 2]).verdict is Verdict.ERROR


def test_joblib_wrapper_without_layout_is_an_error() -> None:
    data = (
        P.PROTO + b"\x04" + global0("joblib.numpy_pickle", "NumpyArrayWrapper") + P.EMPTY_TUPLE + P.NEWOBJ
        + P.EMPTY_DICT + P.BUILD + P.STOP
    )  # fmt: skip
    report = scan_bytes(data)
    assert report.verdict is Verdict.ERROR
    assert any("layout of a joblib array" in f.message for f in report.findings)


# -- legacy torch -----------------------------------------------------------------------------------------
def test_legacy_torch_storages_are_skipped_and_trailing_data_checked() -> None:
    import torch

    data = torch_bytes({"w": torch.ones(3, 3), "h": torch.zeros(2, dtype=torch.float16)}, legacy=True)
    assert (scan_bytes(data).verdict, scan_bytes(data).format) == (Verdict.CLEAN, "pytorch-legacy")
    assert scan_bytes(data[:-3]).verdict is Verdict.ERROR
    assert scan_bytes(data + b"\x00junk").verdict is Verdict.SUSPICIOUS


def test_legacy_torch_with_unknown_storage_key_is_an_error() -> None:
    import torch

    data = torch_bytes({"w": torch.ones(2)}, legacy=True)
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    rest = pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2) + pickle.dumps({}, protocol=2)
    forged = magic + rest + pickle.dumps(["k"], protocol=2) + struct.pack("<q", 1) + b"\0" * 4
    assert data.startswith(magic)
    report = scan_bytes(forged)
    assert report.verdict is Verdict.ERROR
    assert any("no known element type" in f.message for f in report.findings)


def test_plain_pickled_tensor_nested_checkpoint_is_scanned() -> None:
    import torch

    assert scan_bytes(pickle.dumps(torch.ones(2))).verdict is Verdict.CLEAN
    # the same loader with a malicious embedded checkpoint
    evil_zip = io.BytesIO()
    torch.save({"w": torch.ones(1)}, evil_zip)
    data = (
        P.PROTO + b"\x02" + global0("torch.storage", "_load_from_bytes") + P.SHORT_BINBYTES
        + bytes([len(os_system_pickle(2))]) + os_system_pickle(2) + P.TUPLE1 + P.REDUCE + P.STOP
    )  # fmt: skip
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


# -- the opcode table ----------------------------------------------------------------------------------
def test_the_opcode_table_covers_exactly_what_cpython_knows() -> None:
    """Every opcode of every protocol has one handler; no byte outside CPython's set is accepted."""
    cpython = {op.code.encode("latin-1") for op in pickletools.opcodes}
    handled = [code for family in FAMILIES.values() for code in family]
    assert len(handled) == len(set(handled)), "an opcode is claimed by two families"
    assert set(handled) == cpython
    assert {code[0] for code in cpython} == VALID_OPCODES


@pytest.mark.parametrize("byte", sorted(set(range(256)) - {ord(op.code) for op in pickletools.opcodes}))
def test_a_byte_that_is_no_opcode_is_malformed(byte: int) -> None:
    report = scan_bytes(b"\x80\x04" + bytes([byte]) + b".", name="x.pkl")
    assert report.verdict is Verdict.ERROR, report
    assert any("invalid pickle opcode" in f.message for f in report.findings), report.findings


# -- expansion ("billion laughs") and late PROTO ---------------------------------------------------------------
def _laughs(levels: int, fan: int, *, memo: bool = True) -> bytes:
    """L0 = []; each level is a list of ``fan`` references to the level below (via memo GETs or DUPs)."""
    out = bytearray(b"\x80\x02]q\x00")
    for level in range(1, levels + 1):
        ref = b"h" + bytes([level - 1])
        out += b"(" + ref * fan if memo else b"(" + ref + b"2" * (fan - 1)
        out += b"lq" + bytes([level])
    return bytes(out + b".")


@pytest.mark.parametrize("memo", [True, False], ids=["memo", "dup"])
def test_shared_containers_nested_in_shared_containers_are_an_expansion(memo: bool) -> None:
    report = scan_bytes(_laughs(9, 10, memo=memo))
    assert report.verdict is Verdict.SUSPICIOUS
    [finding] = report.findings
    assert "1,111,111,111 when traversed" in finding.message and "90 stored items" in finding.message
    # The same shape, shallow: a few shared references are ordinary.
    assert scan_bytes(_laughs(3, 10, memo=memo)).verdict is Verdict.CLEAN


def test_the_traversed_size_saturates_instead_of_growing_without_bound() -> None:
    report = scan_bytes(_laughs(120, 2))  # 2**120 when traversed
    assert report.verdict is Verdict.SUSPICIOUS and "more than 4e18" in report.findings[0].message


def test_a_container_holding_itself_again_and_again_is_suspicious() -> None:
    looping = b"\x80\x02]q\x00" + b"h\x00a" * 200 + b"."
    report = scan_bytes(looping)
    assert report.verdict is Verdict.SUSPICIOUS and "holds itself 16+ times" in report.findings[0].message
    assert scan_bytes(b"\x80\x02]q\x00h\x00a.").verdict is Verdict.CLEAN  # once: a plain cycle


@pytest.mark.parametrize("value", [
    [list(range(100)) for _ in range(20_000)],  # large, nothing shared
    [{"a": 1}] * 100_000,  # one dict shared many times, one level deep
    {"layers": [{"w": [0.0] * 64}] * 500, "meta": {"names": ["x"] * 1000}},
], ids=["large", "flat-sharing", "config"])
def test_ordinary_sharing_is_not_an_expansion(value: object) -> None:
    assert scan_bytes(pickle.dumps(value, protocol=4)).verdict is Verdict.CLEAN


def test_proto_in_the_middle_of_a_pickle_is_suspicious() -> None:
    report = scan_bytes(b"\x80\x02]\x80\x02.")
    assert report.verdict is Verdict.SUSPICIOUS and "PROTO 2 in the middle" in report.findings[0].message
    # Several pickles in one stream (torch's legacy format, joblib) each start with their own PROTO.
    assert scan_bytes(pickle.dumps([1], protocol=2) + pickle.dumps({"a": 2}, protocol=2)).verdict is Verdict.CLEAN


@pytest.mark.parametrize("qualname", [
    "pandas.eval", "pandas.core.computation.eval.eval", "pandas.DataFrame.query", "numexpr.evaluate",
    "sympy.sympify", "sympy.parsing.sympy_parser.parse_expr", "sympy.lambdify", "torch.ops.load_library",
    "torch.classes.load_library", "keras.models.load_model", "keras.saving.load_model", "tf_keras.models.load_model",
    "tensorflow.io.read_file", "keras.utils.get_file", "sklearn.utils._joblib.load",
])
def test_expression_evaluators_and_loaders_are_gadgets_no_policy_can_trust(qualname: str) -> None:
    """Functions that evaluate strings or load code/models: a pickle calling one is malicious, and neither a
    namespace policy nor ``--trust-global`` may list it."""
    module, _, name = qualname.rpartition(".")
    assert classify(module, name).verdict is Verdict.MALICIOUS
    assert classify(module, name, frozenset({qualname})).verdict is Verdict.MALICIOUS
    assert trust_refusal(qualname) is not None
    payload = f"c{module}\n{name}\n(S'1+1'\ntR.".encode()
    assert scan_bytes(payload).verdict is Verdict.MALICIOUS


@pytest.mark.parametrize("qualname", ["keras.layers.Dense", "sympy.core.symbol.Symbol", "pandas.DataFrame"])
def test_their_packages_other_classes_stay_merely_unlisted(qualname: str) -> None:
    module, _, name = qualname.rpartition(".")
    assert classify(module, name).verdict is Verdict.SUSPICIOUS


@pytest.mark.parametrize(("operands", "verdict"), [
    (b"K\x01K\x02", Verdict.ERROR),  # ints: the unpickler refuses before importing anything
    (b")\x8c\x01x", Verdict.ERROR),  # a tuple as the module
    (b"\x8c\x01xC\x01y", Verdict.ERROR),  # bytes as the name
    (b"cos\nname\n\x8c\x06system", Verdict.MALICIOUS),  # a module name computed from a global
])
def test_stack_global_operands_that_can_never_be_strings_are_malformed(operands: bytes, verdict: Verdict) -> None:
    assert scan_bytes(b"\x80\x04" + operands + b"\x93.").verdict is verdict


# The first 400 bytes of a random 300 kB "weights" file from a test run: as a lenient pickle it reaches a
# STACK_GLOBAL whose operands are an int and a tuple at offset 329, which the unpickler refuses.
RANDOM_WEIGHTS_PREFIX = bytes.fromhex(
    "29563ea3650d394fe34cb6973e91f789da46afa3d31aa8131b7b621008fbce561a1b7123c76e07268afc66f72d0d0b912997"
    "afae880861951dc7593dca0102f1ea6424522aa1fe2a6df8fe1ab0750685912fce7bd959f71708e2f09e6e48be7eea6bc24b"
    "892bc121c35a3891f334b7a14f8505dea4a69cd0bfe1adc1e6ce6287c745901dd2a4d6f2b1bdd73bf92f05ea4bce31e20095"
    "2d2e407316bd22ee07440752537a8bd26f108ac8640651af4257ed9bff96276ca3a06b597b537316c8e0dcde297b143ca1ad"
    "445968dcd86d949529af1f1ea4abeef2df5b65e85385ccb61361b266c59c6097e2b7a55e999f21b3e6ce09cf9870dd522725"
    "739ff93d48e40c79de7e1c50ef229abfa3fea9bdf51160afd81d881ae5408da9b63816415a791474a84233e131b06205a3ed"
    "489e9b2533bc43225deb2cebd88516504bfbf0a5c26a3bd75b32cce00a9334ef129d7366c6ca8245270dd702a3a3fe5200e9"
    "fb7d56382e5e5874f612cd18570674473d44b67274bef382ae2c45837f6521a7667283a8d53baa11ed1beafeb656fff3ac7b"
)


def test_random_bytes_are_never_malicious() -> None:
    """Test suites and real uploads are full of random-looking bytes (weights, compressed data); a scanner that
    calls some of them malicious quarantines good versions at random."""
    assert scan_bytes(RANDOM_WEIGHTS_PREFIX).verdict is Verdict.SUSPICIOUS
    rng = random.Random(20261203)
    for _ in range(400):
        data = rng.randbytes(rng.choice((64, 4096, 65536)))
        assert scan_bytes(data).verdict is not Verdict.MALICIOUS, data[:32].hex()
