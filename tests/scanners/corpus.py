"""A corpus of benign, third-party, malformed and malicious model files, built in memory.

Shared by the tests and ``bench/scan_bench.py``. Malicious samples carry harmless
payloads (``os.system('true')``, ``print``, ``eval('1+1')``) and are built by
writing opcodes or by pickling objects whose ``__reduce__`` names the payload;
nothing here ever unpickles or loads them.

Categories:
- ``benign``: plain torch/numpy/joblib/pickle/safetensors/text data; must be clean.
- ``third_party``: legitimate files that need third-party code to load (sklearn
  estimators, whole nn.Modules, TorchScript); expected ``suspicious``.
- ``malformed``: truncated or corrupt files; must not be clean.
- ``malicious``: code execution, evasions, bombs, traversal; must not be clean.
"""

from __future__ import annotations

import base64
import bz2
import functools
import gzip
import io
import lzma
import operator
import os
import pickle
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

P = pickle


class Reduce:
    """Pickles as ``fn(*args)``: how real payloads are built. Never unpickled here."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args)


@dataclass(frozen=True)
class Sample:
    name: str
    category: str
    data: bytes
    note: str

    @property
    def must_flag(self) -> bool:
        return self.category in ("malicious", "malformed")


# -- raw opcode helpers ----------------------------------------------------------------------------------
def su(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = s.encode()
    return P.SHORT_BINUNICODE + bytes([len(b)]) + b


def u8(s: str) -> bytes:
    """BINUNICODE8."""
    b = s.encode()
    return b"\x8d" + struct.pack("<Q", len(b)) + b


def sbs(s: str) -> bytes:
    """SHORT_BINSTRING (a protocol-1 byte string, read as str by the unpickler)."""
    b = s.encode()
    return P.SHORT_BINSTRING + bytes([len(b)]) + b


def global0(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def call_pickle(module: str, name: str, *args: str, proto: int = 2) -> bytes:
    """``module.name(*args)`` with GLOBAL + TUPLE + REDUCE."""
    body = global0(module, name) + P.MARK + b"".join(su(a) for a in args) + P.TUPLE + P.REDUCE
    return P.PROTO + bytes([proto]) + body + P.STOP


def os_system_pickle(proto: int = 2) -> bytes:
    return pickle.dumps(Reduce(os.system, ("true",)), protocol=proto)


# -- zip helpers ------------------------------------------------------------------------------------------
@dataclass
class ZipEntry:
    name: str
    data: bytes
    in_central: bool = True
    bad_crc: bool = False
    central_name: str | None = None


def raw_zip(entries: list[ZipEntry], *, prefix: bytes = b"") -> bytes:
    """A stored zip written by hand, to express what zipfile refuses to write (hidden or bad members)."""
    out = bytearray(prefix)
    central = bytearray()
    count = 0
    for e in entries:
        offset = len(out)
        name = e.name.encode()
        crc = zlib.crc32(e.data) ^ (0xDEADBEEF if e.bad_crc else 0)
        size = len(e.data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, 0, 0, 0x21, crc, size, size, len(name), 0)
        out += name + e.data
        if e.in_central:
            cname = (e.central_name or e.name).encode()
            central += struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, 0, 0, 0x21, crc, len(e.data), len(e.data),
                len(cname), 0, 0, 0, 0, 0, offset,
            )  # fmt: skip
            central += cname
            count += 1
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def torch_bytes(obj: object, *, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def replace_member(data: bytes, suffix: str, new: bytes) -> list[ZipEntry]:
    return [ZipEntry(n, new if n.endswith(suffix) else d) for n, d in zip_members(data)]


def wrap_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def deflate_bomb(mib: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open("data.pkl", "w") as w:
        chunk = b"\0" * (1 << 20)
        for _ in range(mib):
            w.write(chunk)
    return buf.getvalue()


def overlap_zip() -> bytes:
    """Member A's data contains member B's local header and data: the overlapping-entry bomb shape."""
    inner_name = b"b.txt"
    inner_data = b"x" * 100
    lh_b = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(inner_data), 100, 100, len(inner_name), 0
    )
    a_data = lh_b + inner_name + inner_data
    name_a = b"a.txt"
    lh_a = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(a_data), len(a_data),
                       len(a_data), len(name_a), 0)  # fmt: skip
    body = lh_a + name_a + a_data
    off_b = len(lh_a) + len(name_a)
    cd = b""
    for name, off, data in ((name_a, 0, a_data), (inner_name, off_b, inner_data)):
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                          len(data), len(name), 0, 0, 0, 0, 0, off) + name  # fmt: skip
    return body + cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(cd), len(body), 0)


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def joblib_bytes(obj: object, compress: int = 0) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


def safetensors_bytes(header: dict[str, Any] | bytes, data: bytes) -> bytes:
    import json

    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# -- models -----------------------------------------------------------------------------------------------
def _models() -> dict[str, Any]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    conv(torch.zeros(1, 3, 8, 8))
    lstm = nn.LSTM(4, 8, num_layers=2)
    enc = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    mlp(torch.randn(4, 8)).sum().backward()
    opt.step()
    return {"mlp": mlp, "conv": conv, "lstm": lstm, "transformer": enc, "optimizer": opt}


def benign_samples() -> list[Sample]:
    import torch

    m = _models()
    s: list[Sample] = []

    def add(name: str, data: bytes, note: str) -> None:
        s.append(Sample(name, "benign", data, note))

    for key in ("mlp", "conv", "lstm", "transformer"):
        add(f"torch_{key}_state_dict.pt", torch_bytes(m[key].state_dict()), f"{key} state_dict, zip format")
    add("torch_optimizer_state.pt", torch_bytes(m["optimizer"].state_dict()), "Adam state_dict after one step")
    ckpt = {"model": m["mlp"].state_dict(), "optimizer": m["optimizer"].state_dict(), "epoch": 3, "best": 0.91}
    add("torch_checkpoint_dict.pt", torch_bytes(ckpt), "training checkpoint dict")
    add("torch_mlp_legacy.pt", torch_bytes(m["mlp"].state_dict(), legacy=True), "legacy (pre-zip) format")
    add("torch_lstm_legacy.pt", torch_bytes(m["lstm"].state_dict(), legacy=True), "legacy format, LSTM")
    dtypes = {"bf16": torch.ones(3, dtype=torch.bfloat16), "i8": torch.arange(4, dtype=torch.int8),
              "f16": torch.zeros(2, dtype=torch.float16), "b": torch.tensor([True])}  # fmt: skip
    add("torch_dtypes.pt", torch_bytes(dtypes), "mixed dtypes")
    add("torch_tensor_plain_pickle.pkl", pickle.dumps(torch.arange(5)), "tensor via plain pickle (nested zip)")
    add("numpy_float.npy", npy_bytes(np.linspace(0, 1, 50)), "float64 array")
    add("numpy_struct.npy", npy_bytes(np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")])), "structured dtype")
    buf = io.BytesIO()
    np.savez(buf, w=np.ones((3, 3), np.float32), b=np.arange(3))
    add("numpy_arrays.npz", buf.getvalue(), "npz archive")
    buf = io.BytesIO()
    np.savez_compressed(buf, w=np.random.default_rng(0).random((20, 20)))
    add("numpy_compressed.npz", buf.getvalue(), "compressed npz")
    add("numpy_array_pickle.pkl", pickle.dumps(np.arange(6).reshape(2, 3), protocol=5), "ndarray pickled")
    add("joblib_arrays.joblib", joblib_bytes({"w": np.ones(5), "n": np.arange(3, dtype=np.int32)}), "joblib")
    add("joblib_arrays_zlib.joblib", joblib_bytes({"w": np.ones(5)}, compress=3), "joblib compressed (zlib)")
    for proto in (0, 2, 4, 5):
        add(f"plain_data_p{proto}.pkl", pickle.dumps({"lr": 0.1, "layers": [1, 2], "name": "x", "od":
            OrderedDict(a=1), "s": {1, 2}, "b": b"raw"}, protocol=proto), "plain data")  # fmt: skip
    from safetensors.numpy import save as st_save

    add("weights.safetensors", st_save({"a": np.ones((2, 2), np.float32), "b": np.arange(3, dtype=np.int64)}),
        "safetensors")  # fmt: skip
    add("config.json", b'{"hidden_size": 16, "model_type": "mlp"}\n', "json config")
    add("README.md", b"# model card\n\nTrained on synthetic data.\n", "text")
    return s


def third_party_samples() -> list[Sample]:
    import torch
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x, y = rng.random((30, 4)), np.arange(30) % 2
    m = _models()
    scripted = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(m["mlp"]), scripted)
    return [
        # Allowlisted estimators (scanners.sklearn_allowlist): clean, though loading needs sklearn.
        Sample("sklearn_logreg.joblib", "benign", joblib_bytes(LogisticRegression().fit(x, y)), "sklearn"),
        Sample("sklearn_forest.pkl", "benign",
               pickle.dumps(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)), "sklearn pickle"),
        Sample("torch_full_model.pt", "third_party", torch_bytes(m["mlp"]), "whole nn.Module pickled"),
        Sample("torchscript_mlp.pt", "third_party", scripted.getvalue(), "TorchScript archive"),
    ]  # fmt: skip


def malformed_samples() -> list[Sample]:
    good = pickle.dumps({"a": list(range(100))}, protocol=4)
    import torch

    sd = torch_bytes(torch.nn.Linear(4, 2).state_dict())
    return [
        Sample("truncated_p4.pkl", "malformed", good[: len(good) // 2], "pickle cut in half"),
        Sample("bad_opcode.pkl", "malformed", good[:20] + b"\xff" + good[21:], "invalid opcode"),
        Sample("memo_missing.pkl", "malformed", b"\x80\x02h\x07.", "BINGET of an undefined memo key"),
        Sample("truncated_torch.pt", "malformed", sd[: len(sd) // 2], "zip cut in half"),
        Sample("random.bin", "malformed", os.urandom(4096), "random bytes"),
    ]


def _payloads() -> dict[str, bytes]:
    """Harmless payload pickles by technique."""
    sys_call = os_system_pickle(2)
    return {
        "os_system_p0.pkl": os_system_pickle(0),
        "os_system_p2.pkl": sys_call,
        "os_system_p4.pkl": os_system_pickle(4),
        "builtins_eval.pkl": pickle.dumps(Reduce(eval, ("1+1",)), protocol=2),
        "builtins_exec.pkl": pickle.dumps(Reduce(exec, ("x = 1",)), protocol=4),
        "builtins_print.pkl": pickle.dumps(Reduce(print, ("hello",)), protocol=4),
        "py2_builtin_eval.pkl": call_pickle("__builtin__", "eval", "1+1"),
        "subprocess_run.pkl": call_pickle("subprocess", "check_output", "true"),
        "runpy.pkl": call_pickle("runpy", "run_path", "/nonexistent"),
        "webbrowser.pkl": call_pickle("webbrowser", "open", "http://127.0.0.1/"),
        "marshal_loads.pkl": call_pickle("marshal", "loads", "c"),
        "timeit_code_string.pkl": call_pickle("timeit", "timeit", "1"),
        "cprofile_run.pkl": call_pickle("cProfile", "run", "1"),
        "numpy_runstring.pkl": call_pickle("numpy.testing._private.utils", "runstring", "1"),
        "pydoc_pipepager.pkl": call_pickle("pydoc", "pipepager", "x", "true"),
        "uuid_command.pkl": call_pickle("uuid", "_get_command_stdout", "true"),
        "torch_collect_env_run.pkl": call_pickle("torch.utils.collect_env", "run", "true"),
        "importlib_import.pkl": call_pickle("importlib", "import_module", "os"),
        "ctypes_cdll.pkl": call_pickle("ctypes", "CDLL", "libc.so.6"),
        "shutil_rmtree.pkl": call_pickle("shutil", "rmtree", "/nonexistent"),
        "socket_connect.pkl": call_pickle("socket", "create_connection", "x"),
        "pty_spawn.pkl": call_pickle("pty", "spawn", "true"),
        "pip_main.pkl": call_pickle("pip", "main", "--version"),
        "builtins_open.pkl": call_pickle("builtins", "open", "/dev/null"),
        "torch_hub_load.pkl": call_pickle("torch.hub", "load", "x", "y"),
        "sys_modules.pkl": P.PROTO + b"\x02" + global0("sys", "modules") + P.STOP,
        "posix_system_direct.pkl": call_pickle("posix", "system", "true"),
        # getattr(__import__('os'), 'system')('true'): calling a computed callable.
        "getattr_chain.pkl": P.PROTO + b"\x02" + global0("builtins", "getattr") + P.MARK
        + global0("builtins", "__import__") + P.MARK + su("os") + P.TUPLE + P.REDUCE + su("system") + P.TUPLE
        + P.REDUCE + P.MARK + su("true") + P.TUPLE + P.REDUCE + P.STOP,
        "attrgetter.pkl": pickle.dumps(Reduce(operator.attrgetter, ("system",)), protocol=4),
        "methodcaller.pkl": pickle.dumps(Reduce(operator.methodcaller, ("system", "true")), protocol=4),
        "functools_partial.pkl": pickle.dumps(functools.partial(os.system, "true"), protocol=4),
        # Names spelled in ways a regex over GLOBAL lines misses.
        "memo_built_names.pkl": P.PROTO + b"\x04" + su("os") + P.MEMOIZE + su("system") + P.MEMOIZE + P.POP
        + P.POP + P.BINGET + b"\x00" + P.BINGET + b"\x01" + P.STACK_GLOBAL + su("true") + P.TUPLE1 + P.REDUCE
        + P.STOP,
        "stack_global_binunicode8.pkl": P.PROTO + b"\x04" + u8("os") + u8("system") + P.STACK_GLOBAL + u8("true")
        + P.TUPLE1 + P.REDUCE + P.STOP,
        "stack_global_binstring.pkl": P.PROTO + b"\x04" + sbs("os") + sbs("system") + P.STACK_GLOBAL + sbs("true")
        + P.TUPLE1 + P.REDUCE + P.STOP,
        "dotted_name_p4.pkl": P.PROTO + b"\x04" + su("torch.serialization") + su("os.system") + P.STACK_GLOBAL
        + su("true") + P.TUPLE1 + P.REDUCE + P.STOP,
        "dunder_walk_p4.pkl": P.PROTO + b"\x04" + su("collections") + su("OrderedDict.__init__.__globals__")
        + P.STACK_GLOBAL + P.STOP,
        "inst_p0.pkl": b"(S'true'\nios\nsystem\n.",
        "obj_p1.pkl": P.MARK + global0("os", "system") + sbs("true") + P.OBJ + P.STOP,
        "newobj_subprocess.pkl": P.PROTO + b"\x02" + global0("subprocess", "Popen") + su("true") + P.TUPLE1
        + P.NEWOBJ + P.STOP,
        "build_overwrites_global.pkl": P.PROTO + b"\x02" + global0("collections", "OrderedDict") + P.NONE
        + P.EMPTY_DICT + su("x") + su("y") + P.SETITEM + P.TUPLE2 + P.BUILD + P.STOP,
        "ext_code.pkl": P.PROTO + b"\x02" + P.EXT1 + b"\x07" + P.EMPTY_TUPLE + P.REDUCE + P.STOP,
        "nested_pickle_loads.pkl": pickle.dumps(Reduce(pickle.loads, (sys_call,)), protocol=4),
        "nested_codecs_latin1.pkl": P.PROTO + b"\x02" + global0("pickle", "loads") + global0("_codecs", "encode")
        + su(sys_call.decode("latin-1")) + su("latin1") + P.TUPLE2 + P.REDUCE + P.TUPLE1 + P.REDUCE + P.STOP,
        "nested_base64.pkl": P.PROTO + b"\x02" + global0("_pickle", "loads") + global0("base64", "b64decode")
        + su(base64.b64encode(sys_call).decode()) + P.TUPLE1 + P.REDUCE + P.TUPLE1 + P.REDUCE + P.STOP,
        "nested_torch_load.pkl": P.PROTO + b"\x02" + global0("torch", "load") + global0("io", "BytesIO")
        + P.SHORT_BINBYTES + bytes([len(sys_call)]) + sys_call + P.TUPLE1 + P.REDUCE + P.TUPLE1 + P.REDUCE
        + P.STOP,
        "numpy_load_allow_pickle.pkl": P.PROTO + b"\x02" + global0("numpy", "load") + global0("io", "BytesIO")
        + P.SHORT_BINBYTES + b"\x04abcd" + P.TUPLE1 + P.REDUCE + P.NONE + P.NEWTRUE + P.TUPLE3 + P.REDUCE + P.STOP,
        "concat_after_benign.pkl": pickle.dumps({"weights": [1.0, 2.0]}, protocol=2) + sys_call,
    }  # fmt: skip


def malicious_samples(*, bomb_mib: int = 300) -> list[Sample]:
    import torch

    s = [Sample(name, "malicious", data, "payload pickle") for name, data in _payloads().items()]
    evil = os_system_pickle(2)
    sd = torch_bytes(torch.nn.Linear(4, 2).state_dict())

    def add(name: str, data: bytes, note: str) -> None:
        s.append(Sample(name, "malicious", data, note))

    add("torch_zip_evil_data_pkl.pt", raw_zip(replace_member(sd, "/data.pkl", evil)), "data.pkl replaced")
    add("torch_zip_extra_pkl.pt", raw_zip([*replace_member(sd, "/none", b""), ZipEntry("archive/extra.pkl", evil)]),
        "benign data.pkl plus a malicious second .pkl member")  # fmt: skip
    entries = replace_member(sd, "/none", b"")
    pkl_name = next(e.name for e in entries if e.name.endswith("/data.pkl"))
    benign_pkl = next(e.data for e in entries if e.name.endswith("/data.pkl"))
    dup = [ZipEntry(pkl_name, evil), *[e for e in entries if e.name != pkl_name], ZipEntry(pkl_name, benign_pkl)]
    add("torch_zip_duplicate_name.pt", raw_zip(dup), "malicious data.pkl hidden behind a duplicate name")
    add("torch_zip_bad_crc.pt", raw_zip([ZipEntry(e.name, evil, bad_crc=True) if e.name == pkl_name else e
                                         for e in entries]), "malicious data.pkl with a wrong CRC")  # fmt: skip
    add("zip_local_only_member.zip", raw_zip([ZipEntry("a.txt", b"hello"), ZipEntry("x.pkl", evil, in_central=False)]),
        "malicious member only in the local headers")  # fmt: skip
    add("zip_name_mismatch.pt", raw_zip([ZipEntry(pkl_name, evil, central_name="archive/notes.txt")] +
        [e for e in entries if e.name != pkl_name]), "local name data.pkl, central name notes.txt")  # fmt: skip
    add("pickle_zip_polyglot.pt", evil + sd, "malicious pickle prepended to a zip checkpoint")
    add("gzip_wrapped.pkl.gz", gzip.compress(evil), "gzip")
    add("bz2_wrapped.pkl.bz2", bz2.compress(evil), "bzip2")
    add("xz_wrapped.pkl.xz", lzma.compress(evil), "xz")
    add("zlib_wrapped.pkl.z", zlib.compress(evil), "zlib")
    add("lzma_alone_wrapped.pkl.lzma", lzma.compress(evil, format=lzma.FORMAT_ALONE), "lzma alone")
    add("gzip_zip_nested.pt.gz", gzip.compress(raw_zip(replace_member(sd, "/data.pkl", evil))), "zip in gzip")
    add("joblib_evil.joblib", joblib_bytes({"w": np.ones(3), "hook": Reduce(os.system, ("true",))}),
        "joblib with a payload next to arrays")  # fmt: skip
    add("joblib_evil_object_array.joblib",
        joblib_bytes({"o": np.array([1, Reduce(os.system, ("true",))], dtype=object)}),
        "payload inside a joblib object array (nested pickle)")  # fmt: skip
    add("joblib_evil_compressed.joblib", joblib_bytes({"hook": Reduce(os.system, ("true",))}, compress=3),
        "joblib zlib")  # fmt: skip
    obj_arr = np.array([1, Reduce(os.system, ("true",))], dtype=object)
    add("numpy_object_evil.npy", npy_bytes(obj_arr), "object array whose pickle runs a payload")
    add("numpy_object_evil.npz", wrap_zip({"a.npy": npy_bytes(np.ones(2)), "b.npy": npy_bytes(obj_arr)}),
        "npz with a malicious object array")  # fmt: skip
    add("torch_legacy_evil.pt", torch_bytes({"w": torch.ones(2), "hook": Reduce(os.system, ("true",))}, legacy=True),
        "legacy torch with a payload in the checkpoint pickle")  # fmt: skip
    add("torch_legacy_trailing_pickle.pt", torch_bytes({"w": torch.ones(2)}, legacy=True) + evil,
        "legacy torch with a pickle appended after the storages")  # fmt: skip
    add("tar_evil.tar", tar_bytes({"model/data.pkl": evil}), "tar member")
    add("zip_path_traversal.zip", raw_zip([ZipEntry("../../etc/evil.txt", b"x")]), "path traversal")
    add("tar_path_traversal.tar", tar_bytes({"../evil.txt": b"x"}), "path traversal in tar")
    add("zip_overlap_bomb.zip", overlap_zip(), "overlapping members")
    add("zip_deflate_bomb.zip", deflate_bomb(bomb_mib), f"{bomb_mib} MiB of zeros deflated")
    return s


def build_corpus(*, bomb_mib: int = 300) -> list[Sample]:
    """Every sample (the bomb expands to ``bomb_mib`` MiB)."""
    return [*benign_samples(), *third_party_samples(), *malformed_samples(), *malicious_samples(bomb_mib=bomb_mib)]


def write_corpus(directory: Path, samples: list[Sample]) -> list[tuple[Sample, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for sample in samples:
        path = directory / sample.name
        path.write_bytes(sample.data)
        out.append((sample, path))
    return out
