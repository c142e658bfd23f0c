"""mir and its peers on the peers' own test data: picklescan's, modelscan's and fickling's fixtures.

Run: ``.venv/bin/python bench/peer_corpus_bench.py [--mirror-dir /work/.mirror] [--sandbox] [--files]``

Each peer's public repository must be on this machine as a bare git mirror under
``--mirror-dir`` (``<owner>+<name>/repo``, what the session's ``fetch`` tool leaves). Nothing
from a peer is ever committed here: stored fixtures are read with ``git show`` and written to
a temporary directory that is removed at the end; fixtures that a peer's tests build in code
are rebuilt here from the same few lines (opcode lists, ``pickle.dumps`` of an object whose
``__reduce__`` names the payload, literal bytes). Nothing is ever unpickled or loaded.

Every file gets the label that the peer's own tests give it, with a one-line reason, from the
tables below:

- ``malicious``: the peer's test asserts it is flagged (a dangerous global, a non-safe
  severity). Caught = ``malicious`` or ``suspicious``; "caught incl. errors" also counts
  ``error``.
- ``malformed``: the test asserts the peer reports it as broken or not safe because it cannot
  be parsed (corrupt bytes, impossible structures). It must not be reported ``clean``.
- ``benign``: the test asserts no issues (or a safe severity). Any non-clean answer is a
  false positive; a peer's ``skip`` is not.

Per corpus the bench prints the file counts, each tool's detection and false-positive rates,
and then every file where mir's verdict disagrees with the label, with mir's top finding and
the peers' answers. Tools are driven as ``bench/peers.py`` describes; a peer that is not
installed is left out. Fixtures that cannot be rebuilt here (they need TensorFlow, dill,
torchvision, or a blob the mirror lacks) are listed as not built.
"""

from __future__ import annotations

import argparse
import ast
import io
import marshal
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import PEER_MODULES, SHORT, TOOLS, Tool, call, quiet
from scanners import Report, Verdict, scan_path

MAL, BAD, OK = "malicious", "malformed", "benign"
REPOS = {
    "picklescan": "mmaitre314+picklescan",
    "modelscan": "protectai+modelscan",
    "fickling": "trailofbits+fickling",
}


@dataclass(frozen=True)
class Item:
    """One corpus file: where it comes from in the peer's repo or tests, its label, and why."""

    name: str
    label: str
    why: str
    data: bytes
    suffix: str = ""
    """Appended to the file name on disk: fickling's tests name their in-memory pickles ``.pkl``/``.zip``,
    and picklescan and modelscan pick their scanner by extension."""


@dataclass
class Corpus:
    peer: str
    commit: str = "?"
    items: list[Item] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def add(self, item: Item) -> None:
        for other in self.items:
            if other.data == item.data:
                self.duplicates.append(f"{item.name} (same bytes as {other.name})")
                return
        self.items.append(item)


class Mirror:
    """Read-only access to a peer's bare git mirror."""

    def __init__(self, root: Path, peer: str) -> None:
        self.git_dir = root / REPOS[peer] / "repo"

    def available(self) -> bool:
        return (self.git_dir / "HEAD").exists()

    def _git(self, *args: str) -> bytes:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True, timeout=60
        ).stdout

    def head(self) -> str:
        return self._git("rev-parse", "--short=12", "HEAD").decode().strip()

    def show(self, path: str) -> bytes:
        return self._git("show", f"HEAD:{path}")

    def files(self, prefix: str) -> list[str]:
        return self._git("ls-tree", "-r", "--name-only", "HEAD", prefix).decode().split()


# -- small builders, the same shapes the peers' tests write ----------------------------------------------


def unframed(data: bytes) -> bytes:
    """A protocol-4/5 pickle without its single FRAME, so opcodes can be spliced in before STOP."""
    if data[2:3] == pickle.FRAME:
        return data[:2] + data[11:]
    return data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


_FIXED_OPS = {
    "Mark": b"(", "Stop": b".", "Pop": b"0", "PopMark": b"1", "Dup": b"2", "Reduce": b"R", "Build": b"b",
    "Obj": b"o", "Memoize": b"\x94", "StackGlobal": b"\x93", "TupleOne": b"\x85", "TupleTwo": b"\x86",
    "TupleThree": b"\x87", "Tuple": b"t", "EmptyTuple": b")", "EmptyList": b"]", "EmptyDict": b"}",
    "EmptySet": b"\x8f", "List": b"l", "Dict": b"d", "Append": b"a", "Appends": b"e", "SetItem": b"s",
    "SetItems": b"u", "AddItems": b"\x90", "NewTrue": b"\x88", "NewFalse": b"\x89", "NoneOpcode": b"N",
}  # fmt: skip


def encode_op(name: str, args: list[Any]) -> bytes:
    """Encode one opcode written as fickling's tests write it (``op.ShortBinUnicode("os")`` ...)."""
    if name in _FIXED_OPS:
        return _FIXED_OPS[name]
    a = args[0] if args else None
    if name in ("Global", "Inst"):
        mod, attr = args[0].split(" ", 1) if len(args) == 1 else args
        return (b"c" if name == "Global" else b"i") + f"{mod}\n{attr}\n".encode()
    if isinstance(a, str) and name in ("ShortBinUnicode", "BinUnicode", "Unicode", "String"):
        s = a.encode()
        return {
            "ShortBinUnicode": lambda: b"\x8c" + bytes([len(s)]) + s,
            "BinUnicode": lambda: b"X" + struct.pack("<I", len(s)) + s,
            "Unicode": lambda: b"V" + a.encode("raw-unicode-escape") + b"\n",
            "String": lambda: b"S" + repr(a).encode() + b"\n",
        }[name]()
    if isinstance(a, bytes) and name in ("ShortBinBytes", "BinBytes"):
        return (b"C" + bytes([len(a)]) if name == "ShortBinBytes" else b"B" + struct.pack("<I", len(a))) + a
    if isinstance(a, int):
        table: dict[str, Callable[[int], bytes]] = {
            "Proto": lambda n: b"\x80" + bytes([n]),
            "Frame": lambda n: b"\x95" + struct.pack("<Q", n),
            "BinGet": lambda n: b"h" + bytes([n]),
            "LongBinGet": lambda n: b"j" + struct.pack("<I", n),
            "BinPut": lambda n: b"q" + bytes([n]),
            "LongBinPut": lambda n: b"r" + struct.pack("<I", n),
            "Get": lambda n: b"g" + str(n).encode() + b"\n",
            "Put": lambda n: b"p" + str(n).encode() + b"\n",
            "BinInt1": lambda n: b"K" + bytes([n]),
            "BinInt2": lambda n: b"M" + struct.pack("<H", n),
            "BinInt": lambda n: b"J" + struct.pack("<i", n),
        }
        if name in table:
            return table[name](a)
    raise ValueError(f"opcode {name}({args!r}) not supported by this encoder")


def ops(*spec: tuple[Any, ...] | str) -> bytes:
    """Opcodes given as ``("ShortBinUnicode", "os")`` or ``"Reduce"``."""
    return b"".join(encode_op(s, []) if isinstance(s, str) else encode_op(s[0], list(s[1:])) for s in spec)


# -- picklescan: tests/data and tests/data2, labelled from tests/test_scanner.py -------------------------

_P = "tests/data/"
_P2 = "tests/data2/"
_RCE = "test_scan_file_path asserts Dangerous global"
PICKLESCAN: dict[str, tuple[str, str]] = {
    _P + "bad_pytorch.pt": (OK, "PNG magic named .pt; test expects no globals and no scan error"),
    _P + "benign0_v0.pkl": (OK, "['a','b','c'] protocol 0; scanned with no globals"),
    _P + "benign0_v3.pkl": (OK, "['a','b','c'] protocol 3; test_scan_file_path expects no globals"),
    _P + "benign0_v4.pkl": (OK, "['a','b','c'] protocol 4; scanned with no globals"),
    _P + "benign_password_protected.zip": (OK, "encrypted zip of test.txt; 'benign', scanned gracefully"),
    _P + "broken_model.pkl": (MAL, "builtins.exec then truncated BINUNICODE; directory scan: Dangerous exec"),
    _P + "malicious-invalid-bytes.pkl": (MAL, "memo-hidden os.system + trailing junk; test_invalid_bytes_err"),
    _P + "malicious0.pkl": (MAL, "Sour Pickles: compile/eval/apply/getattr Dangerous"),
    _P + "malicious1.7z": (MAL, "7z holding eval pickle; builtins.eval Dangerous"),
    _P + "malicious1.zip": (MAL, "zip holding eval pickle; builtins.eval Dangerous"),
    _P + "malicious1_0x1.zip": (MAL, "zip (flag bit 0x1) holding eval pickle; builtins.eval Dangerous"),
    _P + "malicious1_0x20.zip": (MAL, "zip (flag bit 0x20) holding eval pickle; builtins.eval Dangerous"),
    _P + "malicious1_0x40.zip": (MAL, "zip (flag bit 0x40) holding eval pickle; builtins.eval Dangerous"),
    _P + "malicious1_central_directory.zip": (MAL, "local/central names differ; builtins.eval Dangerous"),
    _P + "malicious1_v0.pkl": (MAL, "__builtin__.eval protocol 0; " + _RCE),
    _P + "malicious1_v3.pkl": (MAL, "builtins.eval protocol 3; " + _RCE),
    _P + "malicious1_v4.pkl": (MAL, "builtins.eval protocol 4; " + _RCE),
    _P + "malicious1_wrong_ext.zip": (MAL, "eval pickle stored as data.txt in a zip; builtins.eval Dangerous"),
    _P + "malicious10.pkl": (MAL, "INST __builtin__ exec; " + _RCE),
    _P + "malicious11.pkl": (MAL, "STACK_GLOBAL from memo (os.system) without PROTO; directory scan"),
    _P + "malicious12.pkl": (MAL, "operator.attrgetter + builtins.__import__ chain; directory scan"),
    _P + "malicious13a.pkl": (MAL, "pickle.loads of a nested pickle (protocol 0); directory scan Dangerous"),
    _P + "malicious13b.pkl": (MAL, "_pickle.loads of a nested pickle (protocol 4); directory scan Dangerous"),
    _P + "malicious14.pkl": (MAL, "runpy._run_code; " + _RCE),
    _P + "malicious15a.pkl": (MAL, "bdb.Bdb.run (protocol 2); directory scan Dangerous"),
    _P + "malicious15b.pkl": (MAL, "bdb.Bdb.run (protocol 4); directory scan Dangerous"),
    _P + "malicious16.pkl": (MAL, "pip.main install; directory scan Dangerous"),
    _P + "malicious17.pkl": (MAL, "torch._inductor.codecache.compile_file; directory scan Dangerous"),
    _P + "malicious18.pkl": (MAL, "pydoc.pipepager; directory scan Dangerous"),
    _P + "malicious19.pkl": (MAL, "functools.partial(torch.load, weights_only=False); directory scan"),
    _P + "malicious2_v0.pkl": (MAL, "posix.system protocol 0; " + _RCE),
    _P + "malicious2_v3.pkl": (MAL, "posix.system protocol 3; " + _RCE),
    _P + "malicious2_v4.pkl": (MAL, "posix.system protocol 4; " + _RCE),
    _P + "malicious20.pkl": (MAL, "venv.create with a shell payload; directory scan Dangerous"),
    _P + "malicious3.pkl": (MAL, "httplib.HTTPSConnection; " + _RCE),
    _P + "malicious4.pickle": (MAL, "requests.api.get; " + _RCE),
    _P + "malicious5.pickle": (MAL, "aiohttp.client.ClientSession; " + _RCE),
    _P + "malicious6.pkl": (MAL, "benign list then requests.api.get (stacked pickles); " + _RCE),
    _P + "malicious7.pkl": (MAL, "socket.create_connection; " + _RCE),
    _P + "malicious8.pkl": (MAL, "subprocess.run; " + _RCE),
    _P + "malicious9.pkl": (MAL, "sys.exit; " + _RCE),
    _P + "new_pytorch_model.bin": (OK, "torch zip state dict; test_scan_pytorch expects only Innocuous globals"),
    _P + "not_a_pickle.bin": (OK, "b'cmod\\n\\xf8\\n' (not a pickle); test expects no threats and no error"),
    _P + "pytorch_magic_bypass.pt": (MAL, "legacy torch with eval magic + posix.system; test_scan_pytorch"),
    _P + "pytorch_model.bin": (OK, "legacy torch state dict; test_scan_pytorch expects only Innocuous globals"),
    _P + "sys_module_override_sploit.pkl": (MAL, "BUILD on torch._utils module to rebind to builtins.eval"),
    _P2 + "cloudpickle_codeinjection.pkl": (MAL, "cloudpickle _make_function/CodeType; all Dangerous"),
    _P2 + "dns_exfiltration.npy": (MAL, "object .npy calling ssl.get_server_certificate; test_scan_numpy"),
    _P2 + "int_array.npy": (OK, "plain int .npy; test_scan_numpy expects no globals"),
    _P2 + "int_arrays.npz": (OK, "plain int .npz; expects no globals"),
    _P2 + "int_arrays_compressed.npz": (OK, "plain int compressed .npz; expects no globals"),
    _P2 + "io_FileIO.pkl": (MAL, "_io.FileIO('/etc/hosts'); Dangerous"),
    _P2 + "keyerror-exploit.pkl": (MAL, "os.system then STACK_GLOBAL from a missing memo key; Dangerous"),
    _P2 + "logging_FileHandler.pkl": (MAL, "logging.FileHandler creates files; Dangerous"),
    _P2 + "malicious1_crc.zip": (MAL, "zip with a CRC mismatch holding eval pickle; Dangerous"),
    _P2 + "malicious21.pkl": (MAL, "timeit.timeit with os.system setup; Dangerous"),
    _P2 + "malicious22.pkl": (MAL, "numpy.testing._private.utils.runstring; Dangerous"),
    _P2 + "malicious23.pkl": (MAL, "STRING module/name then STACK_GLOBAL os.system, no PROTO; Dangerous"),
    _P2 + "object_array.npy": (OK, "object .npy of tuples; test_scan_numpy expects only Innocuous globals"),
    _P2 + "object_arrays.npz": (OK, "object .npz; expects only Innocuous globals"),
    _P2 + "object_arrays_compressed.npz": (OK, "object compressed .npz; expects only Innocuous globals"),
    _P2 + "type-confusion-exploit.pkl": (MAL, "os.system then STACK_GLOBAL(42, 'os'); Dangerous"),
    _P2 + "types_CodeType.pkl": (MAL, "types.CodeType built from raw code args; Dangerous"),
    _P2 + "urllib_request_urlopen.pkl": (MAL, "urllib.request.urlopen; Dangerous"),
}
_GHSA = {
    "3gf5-cxq9-w223": "idlelib.pyshell.ModifiedInterpreter.runcode",
    "3vg9-h568-4w9m": "idlelib.debugobj.ObjectTreeItem.SetText",
    "4675-36f9-wf6r": "ctypes.CDLL",
    "46h3-79wf-xr6c": "_operator.attrgetter + builtins.__import__",
    "49gj-c84q-6qm9": "cProfile.run",
    "4r9r-ch6f-vxmx": "torch.utils.bottleneck.__main__.run_cprofile",
    "4whj-rm5r-c2v8": "torch.utils.bottleneck.__main__.run_autograd_prof",
    "5qwp-399c-mjwf": "trace.Trace.run",
    "6vqj-c2q5-j97w": "profile.Profile.runctx",
    "6w4w-5w54-rjvr": "idlelib.autocomplete.AutoComplete.get_entity",
    "7cq8-mj8x-j263": "idlelib.autocomplete.AutoComplete.fetch_completions",
    "7wx9-6375-f5wh": "profile.run",
    "84r2-jw7c-4r5q": "operator.methodcaller applied to pydoc.locate('os')",
    "86cj-95qr-2p4f": "torch._dynamo.guards.GuardBuilder.get",
    "8r4j-24qv-fmq9": "idlelib.calltip.Calltip.fetch_tip",
    "955r-x9j8-7rhh": "_operator.methodcaller + builtins.__import__",
    "9w88-8rmg-7g2p": "cProfile.runctx",
    "9xph-j2h6-g47v": "idlelib.calltip.get_entity",
    "cj3c-v495-4xqh": "code.InteractiveInterpreter.runcode",
    "f4x7-rfwp-v3xw": "torch.fx.experimental.symbolic_shapes.ShapeEnv.evaluate_guards_expression",
    "f54q-57x4-jg88": "lib2to3.pgen2.grammar.Grammar.loads",
    "f745-w6jp-hpxx": "torch.utils.collect_env.run",
    "fqq6-7vqf-w3fg": "doctest.debug_script",
    "g344-hcph-8vgg": "trace.Trace.runctx",
    "g38g-8gr9-h9xp-aix-support": "_aix_support._read_cmd_output",
    "g38g-8gr9-h9xp-imaplib": "imaplib.IMAP4_stream",
    "g38g-8gr9-h9xp-osx-support": "_osx_support._read_output",
    "g38g-8gr9-h9xp-pyrepl-pager": "_pyrepl.pager.pipe_pager",
    "g38g-8gr9-h9xp-test": "test.support.script_helper.assert_python_ok",
    "g38g-8gr9-h9xp-uuid": "uuid._get_command_stdout",
    "h3qp-7fh3-f8h4": "torch.utils.data.datapipes.utils.decoder.basichandlers",
    "j343-8v2j-ff7w": "idlelib.pyshell.ModifiedInterpreter.runcommand",
    "jhph-76pp-mggw": "torch.utils.collect_env.run_and_read_all(run, ...)",
    "m273-6v24-x4m4": "distutils.file_util.write_file",
    "m869-42cg-3xwr": "idlelib.run.Executive.runcode",
    "p9w7-82w4-7q8m": "lib2to3.pgen2.pgen.ParserGenerator.make_label",
    "q77w-mwjj-7mqx": "asyncio.unix_events._UnixSubprocessTransport._start",
    "r8g5-cgf2-4m4m": "numpy.f2py.crackfortran.getlincoef",
    "vqmv-47xg-9wpr": "pty.spawn",
    "vr7h-p6mm-wpmh": "torch.jit.unsupported_tensor_ops.execWrapper",
    "vv6j-3g6g-2pvj": "torch.utils._config_module.ConfigModule.load_config",
    "vvpj-8cmc-gx39": "pkgutil.resolve_name('os:system')",
    "x696-vm39-cp64": "profile.Profile.run",
    "xp4f-hrf8-rxw7": "ensurepip._run_pip",
}
for _id, _what in _GHSA.items():
    PICKLESCAN[f"{_P2}GHSA-{_id}.pkl"] = (MAL, f"{_what}; assert_scan expects Dangerous")
PICKLESCAN[_P2 + "GHSA-jgw4-cr84-mqxg.bin"] = (MAL, "asyncio _UnixSubprocessTransport._start as .bin; Dangerous")


def build_picklescan(mirror: Mirror) -> Corpus:
    corpus = Corpus("picklescan", mirror.head())
    for path, (label, why) in PICKLESCAN.items():
        try:
            corpus.add(Item(path, label, why, mirror.show(path)))
        except subprocess.CalledProcessError:
            corpus.not_built.append(f"{path} (not in the mirror)")
    stored = {p for d in (_P, _P2) for p in mirror.files(d)}
    corpus.not_built += [f"{p} (in the repo, no label in this bench's table)" for p in sorted(stored - set(PICKLESCAN))]
    return corpus


# -- modelscan: tests/data plus the fixtures tests/test_modelscan.py builds ------------------------------

# Fixtures whose recipe in test_modelscan.py is the same as picklescan's init_data_files.py (same classes,
# same protocol): the bytes are taken from picklescan's stored copy.
_MS_SHARED: dict[str, tuple[str, str, str]] = {
    "benign0_v0.pkl": (OK, _P + "benign0_v0.pkl", "test_scan_directory_path: scanned, no issue"),
    "benign0_v3.pkl": (OK, _P + "benign0_v3.pkl", "test_scan_file_path: no issues, no errors"),
    "benign0_v4.pkl": (OK, _P + "benign0_v4.pkl", "test_scan_directory_path: scanned, no issue"),
    "malicious0.pkl": (MAL, _P + "malicious0.pkl", "apply/eval/compile/getattr CRITICAL"),
    "malicious1_v0.pkl": (MAL, _P + "malicious1_v0.pkl", "__builtin__.eval CRITICAL"),
    "malicious1_v3.pkl": (MAL, _P + "malicious1_v3.pkl", "builtins.eval CRITICAL"),
    "malicious1_v4.pkl": (MAL, _P + "malicious1_v4.pkl", "builtins.eval CRITICAL"),
    "malicious1.zip": (MAL, _P + "malicious1.zip", "zip:data.pkl builtins.eval CRITICAL"),
    "malicious2_v0.pkl": (MAL, _P + "malicious2_v0.pkl", "posix.system CRITICAL"),
    "malicious2_v3.pkl": (MAL, _P + "malicious2_v3.pkl", "posix.system CRITICAL"),
    "malicious2_v4.pkl": (MAL, _P + "malicious2_v4.pkl", "posix.system CRITICAL"),
    "malicious3.pkl": (MAL, _P + "malicious3.pkl", "httplib.HTTPSConnection HIGH"),
    "malicious4.pickle": (MAL, _P + "malicious4.pickle", "requests.api.get HIGH"),
    "malicious5.pickle": (MAL, _P + "malicious5.pickle", "aiohttp.client.ClientSession HIGH"),
    "malicious6.pkl": (MAL, _P + "malicious6.pkl", "stacked: list then requests.api.get HIGH"),
    "malicious7.pkl": (MAL, _P + "malicious7.pkl", "socket.create_connection CRITICAL"),
    "malicious8.pkl": (MAL, _P + "malicious8.pkl", "subprocess.run CRITICAL"),
    "malicious9.pkl": (MAL, _P + "malicious9.pkl", "sys.exit CRITICAL"),
    "malicious11.pkl": (MAL, _P + "malicious11.pkl", "memo-hidden os.system CRITICAL"),
    "malicious15.pkl": (MAL, _P + "malicious15b.pkl", "bdb.Bdb / bdb.Bdb.run CRITICAL"),
}


def _malicious12() -> bytes:
    """test_modelscan.malicious12_gen: pickle.loads of a nested os.system pickle."""
    p2 = b"\x80\x05" + pickle.GLOBAL + b"os\nsystem\n" + pickle.UNICODE + b"echo pwned!!!\n" + pickle.TUPLE1
    p2 += pickle.REDUCE + pickle.STOP
    p = b"\x80\x05" + pickle.GLOBAL + b"pickle\nloads\n" + pickle.BINBYTES + len(p2).to_bytes(4, "little") + p2
    return p + pickle.TUPLE1 + pickle.REDUCE + pickle.POP + pickle.NONE + pickle.STOP


# fmt: off
_MS_LITERAL: dict[str, tuple[str, str, bytes]] = {
    "malicious10.pkl": (MAL, "INST __builtin__ exec CRITICAL",
                        b"(S'print(\"Injection running\")'\ni__builtin__\nexec\n."),
    "malicious12.pkl": (MAL, "pickle.loads of a nested os.system pickle CRITICAL (malicious12_gen)", _malicious12()),
    "malicious13.pkl": (MAL, "builtins 'eval.__call__' CRITICAL (malicious13_gen)",
                        b"\x80\x05" + pickle.GLOBAL + b"builtins\neval.__call__\n" + pickle.UNICODE
                        + b'__import__("os").system("echo pwned!!!")\n' + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP),
    "malicious14.pkl": (MAL, "memo-hidden os.system + trailing junk CRITICAL (malicious14_gen)",
                        b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93"
                        b"(Vcat flag.txt\ntR.\n\n\t\t"),
    "bad_pytorch.pt": (OK, "PNG magic named .pt: skipped (invalid magic), no issues", b"\x89PNG\r\n\x1a\n"),
}
# fmt: on


class _InjectPickler(pickle._Pickler):
    """test_utils.PickleInject._Pickler: payload objects saved before the user's object, one STOP."""

    def __init__(self, file: io.BytesIO, inj: list[Any]) -> None:
        super().__init__(file, 4)
        self.inj = inj

    def dump(self, obj: Any) -> None:
        self.write(pickle.PROTO + struct.pack("<B", self.proto))
        self.framer.start_framing()
        for o in self.inj:
            self.save(o)
        self.save(obj)
        self.write(pickle.STOP)
        self.framer.end_framing()


class _Exec:
    """test_utils.PickleInject.Exec: pickles as ``exec(code)``; never unpickled here."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


class _Eval(_Exec):
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (self.code,))


def build_modelscan(mirror: Mirror, picklescan: Mirror, tmp: Path) -> Corpus:
    import numpy as np

    corpus = Corpus("modelscan", mirror.head())
    corpus.add(Item("tests/data/unsafe_zip_pytorch.pt", MAL, "stored; posix.system CRITICAL in data.pkl",
                    mirror.show("tests/data/unsafe_zip_pytorch.pt")))  # fmt: skip
    corpus.add(Item("tests/data/password_protected.zip", OK, "stored; skipped as encrypted, no issues, no errors",
                    mirror.show("tests/data/password_protected.zip")))  # fmt: skip
    for name, (label, src, why) in _MS_SHARED.items():
        if not picklescan.available():
            corpus.not_built.append(f"{name} (recipe shared with picklescan; its mirror is missing)")
            continue
        corpus.add(Item(f"file_path:{name}", label, f"{why} [bytes: picklescan {src}]", picklescan.show(src)))
    for name, (label, why, data) in _MS_LITERAL.items():
        corpus.add(Item(f"file_path:{name}", label, why, data))

    buf = io.BytesIO()
    np.save(buf, [[1, 2, 3], [4, 5, 6]])
    corpus.add(Item("numpy_file_path:safe_numpy.npy", OK, "np.save of an int array; no issues", buf.getvalue()))
    buf = io.BytesIO()
    _InjectPickler(buf, [_Exec('print("Malicious code!")')]).dump(np.array([[1, 2, 3], [4, 5, 6]]))
    corpus.add(Item("numpy_file_path:unsafe_numpy.npy", MAL, "exec injected before an ndarray; builtins.exec CRITICAL",
                    buf.getvalue()))  # fmt: skip

    with quiet():
        import torch

        for fname, zipped in (("safe_zip_pytorch.pt", True), ("safe_old_format_pytorch.pt", False)):
            path = tmp / fname
            torch.save(torch.nn.Module().state_dict(), path, _use_new_zipfile_serialization=zipped)
            corpus.add(Item(f"pytorch_file_path:{fname}", OK, "torch.save of an empty state dict; no issues",
                            path.read_bytes()))  # fmt: skip
            path.unlink()

    if find_spec("dill") is not None:
        import dill

        for v in (0, 3, 4):
            corpus.add(Item(f"file_path:benign0_v{v}.dill", OK, "dill list; no issue", dill.dumps(["a", "b", "c"], v)))
            corpus.add(Item(f"file_path:malicious1_v{v}.dill", MAL, "dill eval payload; builtins.eval CRITICAL",
                            dill.dumps(_Eval("print('456')"), v)))  # fmt: skip
    else:
        corpus.not_built.append("file_path:benign0_v{0,3,4}.dill, malicious1_v{0,3,4}.dill (dill not installed)")
    corpus.not_built.append(
        "keras_file_path / tensorflow_file_path: safe/unsafe .h5, .keras, SavedModel with Lambda layers or "
        "ReadFile/WriteFile ops, and the dill-injected Keras pickle (need tensorflow + tf_keras to build)"
    )
    corpus.not_built.append("notebooks/: build models by training (transformers, tensorflow, xgboost); no stored files")
    return corpus


# -- fickling: the pickles its tests assemble from opcode lists or build with pickle.dumps ----------------


class _Source:
    """A fickling test module, parsed; opcode lists are read from its ``Pickled([...])`` calls."""

    def __init__(self, text: str) -> None:
        self.tree = ast.parse(text)

    def function(self, name: str) -> ast.FunctionDef:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
        raise KeyError(name)

    def pickled_lists(self, func: str) -> list[ast.List]:
        calls = [
            n
            for n in ast.walk(self.function(func))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Pickled"
            and n.args and isinstance(n.args[0], ast.List)
        ]  # fmt: skip
        return [c.args[0] for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]

    def assigned(self, func: str, name: str) -> ast.expr:
        for n in ast.walk(self.function(func)):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
                return n.value
        raise KeyError(f"{func}: {name}")

    def loop_iter(self, func: str, index: int = 0) -> ast.expr:
        loops = [n for n in ast.walk(self.function(func)) if isinstance(n, ast.For)]
        return sorted(loops, key=lambda n: n.lineno)[index].iter


def _value(node: ast.expr, env: dict[str, Any]) -> Any:
    """Evaluate a constant-ish expression from a test (literals, bytes arithmetic, marshal.dumps of a code
    object, loop variables), with no builtins except the few named here."""
    code = compile(ast.Expression(node), "<fickling test>", "eval")
    safe = {"list": list, "range": range, "len": len, "compile": compile, "bytes": bytes}
    return eval(code, {"__builtins__": safe}, env)


def _encode_list(lst: ast.List, env: dict[str, Any]) -> bytes:
    out = []
    for el in lst.elts:
        if not isinstance(el, ast.Call):
            raise ValueError("opcode list element is not a call")
        f = el.func
        if isinstance(f, ast.Attribute) and f.attr == "create":
            f = f.value
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else "?"
        out.append(encode_op(name, [_value(a, env) for a in el.args]))
    return b"".join(out)


def _class_literal(src: _Source, cls: str, attr: str) -> Any:
    """A class attribute literal (dict, frozenset({...})) read from fickling's own source."""
    for node in ast.walk(src.tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for st in node.body:
                if not (isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.target.id == attr):
                    continue
                value = st.value
                if isinstance(value, ast.Call):  # frozenset({...})
                    value = value.args[0]
                if value is not None:
                    return ast.literal_eval(value)
    raise KeyError(f"{cls}.{attr}")


# (test module, function, index of the Pickled([...]) call, bindings for names used in it) -> label, why
_B = "test_bypasses.py"
_GT = "check_safety severity > LIKELY_SAFE"
# fmt: off
FICKLING_LISTS: list[tuple[str, str, int, dict[str, Any], str, str]] = [
    (_B, "test_missing_pty_unsafe_imports_ghsa", 0, {}, MAL, "pty.spawn('id'); " + _GT),
    (_B, "test_missing_pty_unsafe_imports_pr", 0, {}, MAL, "OBJ pty.spawn('id'); " + _GT),
    (_B, "test_missing_marshal_and_types", 0, {}, MAL, "marshal.loads code -> types.FunctionType; " + _GT),
    (_B, "test_missing_runpy", 0, {}, MAL, "runpy.run_path; " + _GT),
    (_B, "test_missing_cprofile", 0, {}, MAL, "cProfile.run; " + _GT),
    (_B, "test_missing_ctypes", 0, {}, MAL, "getattr(ctypes.CDLL(libc), 'system')('id'); " + _GT),
    (_B, "test_missing_pydoc", 0, {}, MAL, "pydoc.locate('os.system')('id'); " + _GT),
    (_B, "test_missing_importlib", 0, {}, MAL, "getattr(importlib.import_module('os'), 'system'); " + _GT),
    (_B, "test_missing_code", 0, {}, MAL, "code.InteractiveInterpreter().runsource; " + _GT),
    (_B, "test_missing_multiprocessing", 0, {}, MAL, "multiprocessing.util.spawnv_passfds; " + _GT),
    (_B, "test_builtins_import_bypass", 0, {}, MAL, "getattr(__import__('os'), 'system'); " + _GT),
    (_B, "test_safe_builtins_not_flagged", 0, {}, OK, "builtins.len([]); no UnsafeImports finding"),
    (_B, "test_safe_builtin_dict_not_flagged", 0, {}, OK, "builtins.dict(); no UnsafeImports finding"),
    (_B, "test_unsafe_builtins_still_flagged", 0, {}, MAL, "builtins.getattr('os','system'); " + _GT),
    (_B, "test_unsafe_builtin_eval_still_flagged", 0, {}, MAL, "builtins.eval; " + _GT),
    (_B, "test_operator_methodcaller", 0, {}, MAL, "_operator.methodcaller('system')(__import__('os')); " + _GT),
    (_B, "test_distutils_write_file", 0, {}, MAL, "distutils.file_util.write_file; " + _GT),
    (_B, "test_io_fileio", 0, {}, MAL, "_io.FileIO('/etc/passwd'); " + _GT),
    (_B, "test_numpy_f2py_getlincoef", 0, {}, MAL, "numpy.f2py.crackfortran.getlincoef eval; " + _GT),
    (_B, "test_asyncio_subprocess", 0, {}, MAL, "asyncio _UnixSubprocessTransport._start; " + _GT),
    (_B, "test_obj_pop_call_invisibility", 0, {}, MAL, "OBJ smtplib.SMTP('127.0.0.1') then POP; " + _GT),
    (_B, "test_missing_uuid", 0, {}, MAL, "uuid._get_command_stdout; " + _GT),
    (_B, "test_missing_aix_support", 0, {}, MAL, "_aix_support._read_cmd_output; " + _GT),
    (_B, "test_missing_osx_support", 0, {}, MAL, "_osx_support._find_build_tool injection; " + _GT),
    (_B, "test_dotted_attr_via_stdlib_module", 0, {}, MAL, "pathlib 'os.system' dotted STACK_GLOBAL; " + _GT),
    (_B, "test_ml_allowlist_not_shadowed_by_unsafe_imports_ml", 0, {}, MAL,
     "global ast.parse (no call); MLAllowlist analysis must flag it"),
    (_B, "test_private_stdlib_allowlist", 0, {"module": "_codecs", "name": "encode"}, OK,
     "global _codecs.encode (no call); LIKELY_SAFE"),
    (_B, "test_private_stdlib_allowlist", 0, {"module": "__future__", "name": "annotations"}, OK,
     "global __future__.annotations (no call); LIKELY_SAFE"),
    (_B, "test_private_stdlib_allowlist", 0, {"module": "__future__", "name": "_ssl.RAND_bytes"}, MAL,
     "global __future__ '_ssl.RAND_bytes' (dotted, no call); >= LIKELY_UNSAFE"),
    ("test_analysis.py", "test_benign_pickle", 0, {"module": "collections", "name": "deque"}, OK,
     "global collections.deque (no call); LIKELY_SAFE"),
    ("test_analysis.py", "test_benign_pickle", 0, {"module": "collections.abc", "name": "Iterable"}, OK,
     "global collections.abc.Iterable (no call); LIKELY_SAFE"),
    ("test_pickle.py", "test_variable_used_only_inside_a_tuple", 0, {}, OK,
     "decimal.Decimal() in a BUILD; LIKELY_SAFE"),
    ("test_pickle.py", "test_variable_used_only_in_an_assignment_target", 0, {}, OK,
     "decimal.Decimal('1') as a dict key; LIKELY_SAFE"),
    ("test_crashes.py", "test_impossible_cyclic_pickle", 0, {}, BAD, "dict used as its own key (unhashable); " + _GT),
    ("test_crashes.py", "test_impossible_cyclic_pickle", 1, {}, BAD, "set added to itself (unhashable); " + _GT),
    ("test_expansion_attack_analysis.py", "test_dup_nested_expansion_pattern", 0, {}, MAL,
     "3x3 DUP+LIST nesting (globalLaughs, minimal); ExpansionAttackAnalysis(threshold 5) flags it"),
    ("test_expansion_attack_analysis.py", "test_memo_nested_expansion_pattern", 0, {}, MAL,
     "3x3 BINPUT/BINGET nesting (billionLaughsAlt, minimal); ExpansionAttackAnalysis(ratio 2) flags it"),
    ("test_scanner_deactivation_analysis.py", "test_fickling_remove_hook", 0, {}, MAL,
     "fickling.hook.remove_hook(); OVERTLY_MALICIOUS"),
    ("test_scanner_deactivation_analysis.py", "test_fickling_deactivate_safe_ml", 0, {}, MAL,
     "fickling.hook.deactivate_safe_ml_environment(); OVERTLY_MALICIOUS"),
    ("test_scanner_deactivation_analysis.py", "test_fickling_remove_hook_via_global_opcode", 0, {}, MAL,
     "GLOBAL fickling.hook.remove_hook(); OVERTLY_MALICIOUS"),
    ("test_scanner_deactivation_analysis.py", "test_benign_import_not_flagged", 0, {}, OK,
     "collections.OrderedDict(); 'a benign stdlib import'"),
]
for _m, _c, _p in (("smtplib", "SMTP", 25), ("imaplib", "IMAP4", 143), ("ftplib", "FTP", 21),
                   ("poplib", "POP3", 110), ("telnetlib", "Telnet", 23), ("nntplib", "NNTP", 119)):
    FICKLING_LISTS.append((_B, "test_network_protocol_ssrf", 0, {"module": _m, "cls": _c, "port": _p}, MAL,
                           f"{_m}.{_c}('127.0.0.1', {_p}) (SSRF); {_GT}"))
for _m in ("_interpreters", "_xxsubinterpreters"):
    FICKLING_LISTS.append((_B, "test_private_stdlib_interpreters_blocklisted", 0, {"module": _m}, MAL,
                           f"{_m}.create(); >= LIKELY_OVERTLY_MALICIOUS"))
# fmt: on


def _payload(cmd: str) -> bytes:
    """test_*.Payload: ``__reduce__`` -> ``(os.system, (cmd,))``, pickled at the default protocol (4)."""
    return _dumps(_Reduce("posix", "system", (cmd,)))


class _Reduce:
    """Pickles (through ``_dumps``) as ``module.name(*args)``; the callable is never imported or resolved."""

    def __init__(self, module: str, name: str, args: tuple[Any, ...]) -> None:
        self.module, self.name, self.args = module, name, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Named(self.module, self.name), self.args)


class _Named:
    """Stands for the global ``module.name`` when pickled by ``_dumps``; never called."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> None:  # pickle requires a callable in a reduce tuple
        raise RuntimeError("a stand-in for a pickled global is never called")


def _dumps(obj: Any, protocol: int = 4) -> bytes:
    """``pickle.dumps`` that writes a ``_Named`` as a plain global (STACK_GLOBAL / GLOBAL) by name."""

    class P(pickle._Pickler):
        def save_named(self, obj: _Named) -> None:
            if self.proto >= 4:
                self.save(obj.module)
                self.save(obj.name)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)

        dispatch = {**pickle._Pickler.dispatch, _Named: save_named}

    buf = io.BytesIO()
    P(buf, protocol).dump(obj)
    return buf.getvalue()


def _fickling_recipes(src: dict[str, _Source]) -> list[tuple[str, str, str, Callable[[], bytes]]]:
    """Fixtures that fickling's tests build with pickle.dumps, loops or literal bytes: name, label, why, builder."""
    byp, exp = src[_B], "test_expansion_attack_analysis.py"
    rec: list[tuple[str, str, str, Callable[[], bytes]]] = []

    def gets(n: int) -> bytes:
        return ops(("Proto", 4), "EmptyList", "Memoize", *([("BinGet", 0), "Append"] * n), "Stop")

    # fmt: off
    rec += [
        (f"{exp}::test_memo_expansion_detection", MAL, "1 PUT, 60 BINGET/APPEND; severity >= SUSPICIOUS",
         lambda: gets(60)),
        (f"{exp}::test_dup_expansion_detection", MAL, "150 DUP of an empty list; severity >= SUSPICIOUS",
         lambda: ops(("Proto", 4), "EmptyList", *(["Dup"] * 150), "Stop")),
        (f"{exp}::test_check_safety_catches_resource_exhaustion", MAL, "1 PUT, 200 BINGET/APPEND; >= SUSPICIOUS",
         lambda: gets(200)),
        (f"{exp}::test_legitimate_data_not_flagged", OK, "pickle.dumps(list(range(100))); LIKELY_SAFE",
         lambda: pickle.dumps(list(range(100)))),
        ("test_crashes.py::test_missing_mark_before_tuple", BAD, "b'\\x80\\x04t.' (TUPLE without MARK); " + _GT,
         lambda: b"\x80\x04t."),
        ("test_pickle.py::test_unused_variables", MAL,
         "dumps([1,2,3,4]) + insert_python_eval('[5, 6, 7, 8]', run_first=False); OVERTLY_MALICIOUS",
         lambda: unframed(pickle.dumps([1, 2, 3, 4]))[:-1]
         + ops(("Global", "builtins eval"), ("ShortBinUnicode", "[5, 6, 7, 8]"), "TupleOne", "Reduce", "Pop", "Stop")),
        ("test_pickle.py::test_duplicate_proto[original]", OK, "dumps([1,2,3,4]); LIKELY_SAFE",
         lambda: pickle.dumps([1, 2, 3, 4])),
        ("test_pickle.py::test_duplicate_proto[inserted]", MAL,
         "PROTO 1 and PROTO 2 inserted before STOP; LIKELY_UNSAFE",
         lambda: unframed(pickle.dumps([1, 2, 3, 4]))[:-1] + ops(("Proto", 1), ("Proto", 2), "Stop")),
        (f"{_B}::test_frame_boundary_divergence", MAL,
         "BINBYTES reads past its FRAME, hiding GLOBAL os.system/REDUCE; " + _GT,
         lambda: _frame_payload(byp)),
        ("test_scan_api.py::test_detects_malicious_payload", MAL, "Payload os.system('echo pwned'); not is_safe",
         lambda: _payload("echo pwned")),
        ("test_scan_api.py::test_safe_data", OK, "pickle.dumps([1, 2, 3]); is_safe", lambda: pickle.dumps([1, 2, 3])),
        ("test_scan_api.py::test_graceful_corrupted", BAD, "b'\\x00\\x01\\x02\\x03corrupt'; errors, not safe",
         lambda: b"\x00\x01\x02\x03corrupt"),
        ("test_scan_api.py::test_detects_malicious_pkl", MAL, "zip with model.pkl = Payload os.system; not safe",
         lambda: zip_bytes({"model.pkl": _payload("echo pwned")})),
        ("test_scan_api.py::test_bad_zip_graceful", BAD, "'not a zip file at all' as .zip; <archive> error",
         lambda: b"not a zip file at all"),
        ("test_scan_api.py::test_graceful_mixed_good_and_bad_members", BAD,
         "zip: good.pkl [1,2,3] + bad.pkl b'\\x00\\x01corrupt_pickle'; bad member has errors",
         lambda: zip_bytes({"good.pkl": pickle.dumps([1, 2, 3]), "bad.pkl": b"\x00\x01corrupt_pickle"})),
        ("test_loads_api.py::test_loads_safe_data", OK, "[1, 2, 3, {'key': 'value'}]; loads() accepts it",
         lambda: pickle.dumps([1, 2, 3, {"key": "value"}])),
        ("test_loads_api.py::test_loads_unsafe_data", MAL, "Payload os.system; loads() raises UnsafeFileError",
         lambda: _payload("echo 'malicious code'")),
        ("test_loads_api.py::test_loads_matches_pickle_signature", OK, "{'a': 1, 'b': 2} protocol 2; accepted",
         lambda: pickle.dumps({"a": 1, "b": 2}, protocol=2)),
        ("test_hook.py::test_unsafe_pickle", MAL, "Payload os.system; the hook raises UnsafeFileError",
         lambda: _payload("echo 'I should have been stopped by the hook'")),
        ("test_unpickler.py::test_nested_unsafe_pickle", MAL,
         "pickle.loads(torch.storage._load_from_bytes(os.system pickle)); UnsafeFileError",
         lambda: _dumps(_Reduce("_pickle", "loads", (_dumps(_Reduce("torch.storage", "_load_from_bytes", (
             _dumps(_Reduce("posix", "system", ("echo 'I should have been stopped by the hook'",))),))),)))),
    ]
    # fmt: on

    def framed(body: bytes, declared: int) -> bytes:
        return pickle.PROTO + b"\x05" + pickle.FRAME + struct.pack("<Q", declared) + body

    variants = _value(byp.loop_iter("test_frame_boundary_straddle_variants"), {"pickle": pickle, "struct": struct,
                                                                               "framed": framed})  # fmt: skip
    for desc, data in variants:
        rec.append((f"{_B}::test_frame_boundary_straddle_variants[{desc}]", BAD,
                    "opcode straddles a FRAME boundary; " + _GT, lambda d=data: d + pickle.STOP))  # fmt: skip
    for desc, obj in _value(byp.loop_iter("test_well_formed_frames_are_not_flagged"), {}):
        for proto in (2, 4, 5):
            rec.append((f"{_B}::test_well_formed_frames_are_not_flagged[{desc}, protocol {proto}]", OK,
                        "plain data, well-formed frames; LIKELY_SAFE",
                        lambda o=obj, p=proto: pickle.dumps(o, protocol=p)))  # fmt: skip
    return rec


def _frame_payload(byp: _Source) -> bytes:
    env: dict[str, Any] = {"pickle": pickle, "struct": struct}
    env["hidden"] = _value(byp.assigned("test_frame_boundary_divergence", "hidden"), env)
    return bytes(_value(byp.assigned("test_frame_boundary_divergence", "payload"), env))


def build_fickling(mirror: Mirror) -> Corpus:
    corpus = Corpus("fickling", mirror.head())
    names = {f for f, *_ in FICKLING_LISTS} | {_B, "test_expansion_attack_analysis.py"}
    src = {n: _Source(mirror.show(f"test/{n}").decode()) for n in names}
    analysis = _Source(mirror.show("fickling/analysis.py").decode())
    builtin_names = {"builtins", "__builtins__", "__builtin__"}
    base_env: dict[str, Any] = {"marshal": marshal, "pickle": pickle, "struct": struct}
    code_assign = src[_B].assigned("test_missing_marshal_and_types", "code")
    base_env["code"] = _value(code_assign, {})  # compile() only: the code object is marshalled, never run

    entries = list(FICKLING_LISTS)
    for module in _class_literal(analysis, "UnsafeImportsML", "UNSAFE_MODULES"):
        func = "eval" if module in builtin_names else "dangerous"
        entries.append((_B, "test_all_unsafe_modules_detected", 0, {"module": module, "func": func}, MAL,
                        f"{module}.{func}(); every UNSAFE_MODULES entry must be flagged"))  # fmt: skip
    for module, funcs in _class_literal(analysis, "UnsafeImportsML", "UNSAFE_IMPORTS").items():
        for func in funcs:
            entries.append((_B, "test_all_unsafe_imports_detected", 0, {"module": module, "func": func}, MAL,
                            f"{module}.{func}(); every UNSAFE_IMPORTS entry must be flagged"))  # fmt: skip
    for module in sorted(_class_literal(analysis, "ScannerDeactivation", "SCANNER_MODULES")):
        why = f"{module}.some_func(); ScannerDeactivation (OVERTLY_MALICIOUS)"
        entries.append(("test_scanner_deactivation_analysis.py", "test_all_scanner_modules_covered", 0,
                        {"module": module}, MAL, why))  # fmt: skip

    for fname, func, index, bind, label, why in entries:
        tag = ",".join(str(v) for v in bind.values())
        name = f"{fname}::{func}" + (f"[{tag}]" if tag else "") + (f"#{index}" if index else "")
        try:
            lst = src[fname].pickled_lists(func)[index]
            corpus.add(Item(name, label, why, _encode_list(lst, {**base_env, **bind}), ".pkl"))
        except (KeyError, IndexError, ValueError, TypeError, NameError) as exc:
            corpus.not_built.append(f"{name} ({type(exc).__name__}: {exc})")
    for name, label, why, build in _fickling_recipes(src):
        try:
            data = build()
            suffix = ".zip" if data[:2] == b"PK" or "bad_zip" in name else ".pkl"  # the tests' temp-file suffixes
            corpus.add(Item(name, label, why, data, suffix))
        except (KeyError, IndexError, ValueError, TypeError, NameError, pickle.PicklingError) as exc:
            corpus.not_built.append(f"{name} ({type(exc).__name__}: {exc})")
    corpus.not_built += [
        "test/fixtures/squeezenet1_0_torchscript_v1_4.pt (blob absent from the mirror; test_polyglot/test_pytorch "
        "only check format detection on it)",
        "test_polyglot.py / test_pytorch.py torchvision models (need torchvision; format-detection tests, no label)",
        "test_crashes.py test_pop_mark / test_obj / test_stable_diffusion / test_stack_global_dynamic_import, "
        "test_pickle.py correctness tests (parse-only: the tests assert no safety label)",
        "test_unpickler.py allowed_unsafe_bytes (pickle.loads of a dtype: allowed only with also_allow=pickle.loads)",
    ]
    return corpus


# -- running and reporting -----------------------------------------------------------------------------


def run_mir_sandboxed(path: Path) -> str:
    from scanners.sandbox import scan_path_sandboxed

    return scan_path_sandboxed(path).verdict.value


def top_finding(report: Report) -> str:
    if not report.findings:
        return "no findings"
    f = max(report.findings, key=lambda x: x.severity.rank)
    where = f" [{f.member}]" if f.member else ""
    return f"{f.severity.value}: {f.message}{where}"


def mir_disagrees(label: str, verdict: str) -> bool:
    if label == MAL:
        return verdict not in ("malicious", "suspicious")
    if label == BAD:
        return verdict == "clean"
    return verdict != "clean"


def evaluate(corpus: Corpus, tools: dict[str, Tool], workdir: Path, show_files: bool) -> None:
    d = workdir / corpus.peer
    d.mkdir(parents=True)
    rows: list[tuple[Item, Path, dict[str, str]]] = []
    for i, item in enumerate(corpus.items):
        base = item.name.replace("::", "__").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:90]
        path = d / f"{i:03d}_{safe}{item.suffix}"  # the peer's extension last: picklescan and modelscan route on it
        path.write_bytes(item.data)
        rows.append((item, path, {t: call(fn, path) for t, fn in tools.items()}))

    counts = {lab: sum(it.label == lab for it in corpus.items) for lab in (MAL, BAD, OK)}
    print(f"\n=== {corpus.peer} corpus (mirror HEAD {corpus.commit}): {len(corpus.items)} files: "
          f"{counts[MAL]} malicious, {counts[BAD]} malformed, {counts[OK]} benign")  # fmt: skip
    if show_files:
        for item, _, ans in rows:
            cells = " ".join(f"{SHORT[ans[t]]:>6s}" for t in tools)
            print(f"  {item.label:9s} {cells}  {item.name}")
    print(f"  {'':42s}" + "".join(f"{t:>17s}" for t in tools))
    flagged = {"malicious", "suspicious"}

    def line(text: str, label: str, ok: set[str]) -> None:
        group = [ans for it, _, ans in rows if it.label == label]
        if not group:
            return
        cells = []
        for t in tools:
            n = sum(a[t] in ok for a in group)
            cells.append(f"{n:>4d}/{len(group):<4d}{100 * n / len(group):>5.1f}%")
        print(f"  {text:42s}" + "".join(f"{c:>17s}" for c in cells))

    line("malicious caught (MAL or sus)", MAL, flagged)
    line("malicious caught incl. errors", MAL, flagged | {"error", "crash"})
    line("malformed not passed as clean", BAD, flagged | {"error", "crash"})
    line("benign false positives (any non-clean)", OK, flagged | {"error", "crash"})
    line("benign skipped by the tool", OK, {"skip"})

    bad = [(it, p, a) for it, p, a in rows if mir_disagrees(it.label, a["mir"])]
    print(f"  mir disagrees with the label on {len(bad)} file(s)" + (":" if bad else "."))
    for item, path, ans in bad:
        peers = " ".join(f"{t}={SHORT[ans[t]]}" for t in tools if t != "mir")
        with quiet():
            report = scan_path(path)
        print(f"  - {item.name}\n      label {item.label} ({item.why}); mir {ans['mir']}; {peers}\n"
              f"      mir top finding: {top_finding(report)}")  # fmt: skip
    if corpus.duplicates:
        print(f"  {len(corpus.duplicates)} duplicate(s) counted once: " + "; ".join(corpus.duplicates))
    if corpus.not_built:
        print(f"  not in this run ({len(corpus.not_built)}):")
        for note in corpus.not_built:
            print(f"    - {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror-dir", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--sandbox", action="store_true", help="also run mir in its resource-limited child process")
    parser.add_argument("--files", action="store_true", help="print every file's answers, not only the summary")
    args = parser.parse_args()

    tools: dict[str, Tool] = {"mir": TOOLS["mir"]}
    if args.sandbox:
        tools["mir (sandboxed)"] = run_mir_sandboxed
    missing = []
    for peer, module in PEER_MODULES.items():
        if find_spec(module) is not None:
            tools[peer] = TOOLS[peer]
        else:
            missing.append(peer)
    print("tools: " + ", ".join(tools) + (f" (not installed: {', '.join(missing)})" if missing else ""))

    mirrors = {peer: Mirror(args.mirror_dir, peer) for peer in REPOS}
    workdir = Path(tempfile.mkdtemp(prefix="mir-peer-corpus-"))
    try:
        corpora: list[Corpus] = []
        for peer, mirror in mirrors.items():
            if not mirror.available():
                print(f"{peer}: no mirror at {mirror.git_dir}; corpus skipped")
                continue
            if peer == "picklescan":
                corpora.append(build_picklescan(mirror))
            elif peer == "modelscan":
                corpora.append(build_modelscan(mirror, mirrors["picklescan"], workdir))
            else:
                corpora.append(build_fickling(mirror))
        for corpus in corpora:
            evaluate(corpus, tools, workdir, args.files)
        verdicts = ", ".join(v.value for v in Verdict)
        print(f"\ncaught = malicious or suspicious; mir verdicts: {verdicts}; peers may also answer skip or crash")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
