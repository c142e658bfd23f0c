"""Which pickle globals are plain data, which are code-execution gadgets, and why.

An unpickler imports every global a pickle names (running the module's top-level
code) and may call it. So the policy is an allowlist: the constructors that
PyTorch, NumPy, collections and plain-data checkpoints need (modelled on what
``torch.load(weights_only=True)`` accepts, plus NumPy arrays/dtypes/random state
and a few stdlib value types). Everything else is at least ``suspicious``; names
known to run commands, evaluate code, load further pickles, touch files or the
network, or wrap another callable (attrgetter, partial...) are ``malicious``.

This module holds data only; it never imports the modules it names (torch is
optional for the scanners, and importing is exactly what we must not do).
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass

from scanners.report import Verdict
from scanners.sklearn_allowlist import SKLEARN_SAFE

_TORCH_DTYPES = (
    "bfloat16", "bits16", "bits1x8", "bits2x4", "bits4x2", "bits8", "bool", "complex128", "complex32",
    "complex64", "float16", "float32", "float4_e2m1fn_x2", "float64", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "int1", "int16", "int2", "int3", "int32", "int4",
    "int5", "int6", "int64", "int7", "int8", "qint32", "qint8", "quint2x4", "quint4x2", "quint8", "uint1",
    "uint16", "uint2", "uint3", "uint32", "uint4", "uint5", "uint6", "uint64", "uint7", "uint8",
    "per_channel_affine", "per_channel_affine_float_qparams", "per_channel_symmetric", "per_tensor_affine",
    "per_tensor_symmetric",
)  # fmt: skip

_TORCH_TYPE_PREFIXES = (
    "BFloat16", "Bool", "Byte", "Char", "ComplexDouble", "ComplexFloat", "Double", "Float", "Half", "Int",
    "Long", "Short", "QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8",
)  # fmt: skip

_SAFE_EXACT: frozenset[str] = frozenset(
    [
        # Python value types and the stdlib helpers plain pickles use to rebuild them.
        "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes", "builtins.complex",
        "builtins.slice", "builtins.range", "builtins.int", "builtins.float", "builtins.str",
        "builtins.bool", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.object",
        "_codecs.encode", "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
        "collections.OrderedDict", "collections.Counter", "collections.defaultdict", "collections.deque",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "argparse.Namespace", "types.SimpleNamespace",
        "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
        "pathlib.PurePosixPath", "pathlib.PureWindowsPath", "re._compile",
        # PyTorch: what torch.load(weights_only=True) accepts.
        "torch.Size", "torch.Tensor", "torch.device", "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer",
        "torch.storage.TypedStorage", "torch.storage.UntypedStorage", "torch.UntypedStorage",
        "torch._tensor._rebuild_from_type_v2",
        *(f"torch._utils.{f}" for f in (
            "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor",
            "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor", "_rebuild_wrapper_subclass",
            "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
        )),
        *(f"torch.{d}" for d in _TORCH_DTYPES),
        *(f"torch.{p}Storage" for p in _TORCH_TYPE_PREFIXES),
        *(f"torch.{p}Tensor" for p in _TORCH_TYPE_PREFIXES),
        *(f"torch.cuda.{p}Storage" for p in _TORCH_TYPE_PREFIXES),
        *(f"torch.cuda.{p}Tensor" for p in _TORCH_TYPE_PREFIXES),
        *(f"torch.sparse.{p}Tensor" for p in _TORCH_TYPE_PREFIXES),
        *(f"torch.cuda.sparse.{p}Tensor" for p in _TORCH_TYPE_PREFIXES),
        # Loads the embedded bytes with torch.load: allowed only because the analyser resolves and
        # scans those bytes (see NESTED_LOADERS); unresolvable arguments make it malicious.
        "torch.storage._load_from_bytes",
        # NumPy arrays, dtypes, scalars, masked arrays and random generator state.
        *(f"numpy.{m}.multiarray._reconstruct" for m in ("core", "_core")),
        *(f"numpy.{m}.multiarray.scalar" for m in ("core", "_core")),
        *(f"numpy.{m}.numeric._frombuffer" for m in ("core", "_core")),
        "numpy.ndarray", "numpy.dtype", "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
        "numpy.matrixlib.defmatrix.matrix", "numpy.matrix",
        "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor", "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence", "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64", "numpy.random._generator.Generator", "numpy.random.mtrand.RandomState",
        # TorchScript's pickler rebuilds typed lists with these (data only).
        *(f"torch.jit._pickle.{f}" for f in (
            "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_tensor_from_id",
            "restore_type_tag",
        )),
        # joblib's array placeholder: its raw data follows inline and is delimited by the analyser.
        "joblib.numpy_pickle.NumpyArrayWrapper", "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    ]
)  # fmt: skip

_SAFE_PATTERNS = (
    re.compile(r"numpy\.dtypes\.[A-Za-z0-9]+DType"),
    re.compile(r"numpy\.(bool_|bool|str_|bytes_|void|object_|(float|int|uint|complex)(8|16|32|64|128|256))"),
)

# Whole modules (and their submodules) whose members run code, spawn processes, load further
# pickles, import arbitrary modules, or reach the network or file system.
_MALICIOUS_MODULES: dict[str, str] = {
    **dict.fromkeys(("os", "posix", "nt", "posixpath", "ntpath"), "operating-system access (commands, files)"),
    **dict.fromkeys(
        ("subprocess", "_posixsubprocess", "_winapi", "pty", "commands", "popen2", "multiprocessing", "asyncio",
         "_osx_support", "_aix_support", "platform", "signal", "_thread"),
        "runs processes or controls the interpreter's process",
    ),
    **dict.fromkeys(
        ("sys", "gc", "inspect", "ctypes", "_ctypes", "cffi", "marshal", "code", "codeop", "runpy", "importlib",
         "imp", "zipimport", "pkgutil", "site", "_pyrepl", "idlelib", "lib2to3"),
        "interpreter internals: imports modules, compiles or runs code objects",
    ),
    **dict.fromkeys(
        ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve"),
        "loads further pickles (nested unpickling)",
    ),
    **dict.fromkeys(
        ("pdb", "bdb", "trace", "timeit", "profile", "cProfile", "pydoc", "doctest"),
        "debugger/profiler helpers that execute code strings",
    ),
    **dict.fromkeys(("pip", "ensurepip", "venv", "distutils", "setuptools"), "installs or builds packages"),
    **dict.fromkeys(
        ("socket", "_socket", "ssl", "urllib", "urllib2", "http", "httplib", "requests", "aiohttp", "ftplib",
         "smtplib", "telnetlib", "xmlrpc", "socketserver", "webbrowser", "antigravity"),
        "network access",
    ),
    "shutil": "file-system operations (copy, delete, archive extraction)",
    "tempfile": "creates files",
    "logging.config": "logging configuration evaluates code",
    "torch.hub": "downloads and runs code from the network",
    "torch.jit": "TorchScript loading and compilation",
    "torch.package": "torch.package importer runs packaged code",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.utils.collect_env": "runs shell commands",
    "torch.utils._config_module": "evaluates configuration code",
    "torch._inductor": "compiles and loads generated code",
    "torch._dynamo": "guards evaluate code strings",
    "torch.fx.experimental.symbolic_shapes": "evaluates guard expressions",
    "numpy.f2py": "compiles and imports code",
    "numpy.distutils": "builds native code",
    "numpy.ctypeslib": "loads native libraries",
    "numpy.testing": "test helpers execute code strings",
    "numexpr": "evaluates expression strings",
}

_MALICIOUS_NAMES: dict[str, str] = {
    **{f"builtins.{n}": "evaluates or compiles code" for n in ("eval", "exec", "compile", "execfile")},
    **{f"builtins.{n}": "reflection: reaches arbitrary attributes/modules"
       for n in ("getattr", "setattr", "delattr", "__import__", "globals", "locals", "vars", "reload")},
    **{f"builtins.{n}": "file access" for n in ("open", "file")},
    **{f"builtins.{n}": "interactive/interpreter control"
       for n in ("breakpoint", "input", "exit", "quit", "help", "apply")},
    **{f"types.{n}": "builds code or function objects"
       for n in ("CodeType", "FunctionType", "LambdaType", "MethodType", "ModuleType", "new_class",
                 "prepare_class", "BuiltinFunctionType", "BuiltinMethodType")},
    **{f"{m}.{n}": "wraps attribute access or calls around another object"
       for m in ("operator", "_operator") for n in ("attrgetter", "methodcaller", "itemgetter", "call")},
    **{f"{m}.{n}": "wraps or repeats calls to another callable"
       for m in ("functools", "_functools") for n in ("partial", "reduce", "partialmethod")},
    **{f"{m}.{n}": "file access" for m in ("io", "_io") for n in ("open", "open_code", "FileIO")},
    **{n: "loads a checkpoint with pickle (weights_only=False)"
       for n in ("torch.load", "torch.serialization.load", "torch.serialization._load",
                 "torch.serialization._legacy_load")},
    **{n: "loads arrays with allow_pickle (nested unpickling)"
       for n in ("numpy.load", "numpy.loads", "numpy.lib.npyio.load", "numpy.lib._npyio_impl.load",
                 "numpy.lib.format.read_array", "numpy.core.numeric.loads")},
    **{n: "loads further pickles (nested unpickling)"
       for n in ("pandas.read_pickle", "pandas.io.pickle.read_pickle", "pandas.compat.pickle_compat.load",
                 "joblib.load", "joblib.numpy_pickle.load", "joblib.numpy_pickle.NDArrayWrapper",
                 "joblib.numpy_pickle.ZNDArrayWrapper")},
    **{n: "evaluates expression strings (pandas.eval reaches numexpr or Python eval)"
       for n in ("pandas.eval", "pandas.core.computation.eval.eval", "pandas.DataFrame.eval",
                 "pandas.DataFrame.query", "pandas.core.frame.DataFrame.eval", "pandas.core.frame.DataFrame.query")},
    **{n: "loads further pickles (nested unpickling)"
       for n in ("sklearn.utils._joblib.load", "sklearn.externals.joblib.load",
                 "joblib.numpy_pickle.load_compatibility")},
    **{n: "loads a native library into the process"
       for n in ("torch.ops.load_library", "torch.classes.load_library", "torch._ops.load_library",
                 "torch._classes.load_library")},
    **{n: "parses expression strings with eval or exec"
       for n in ("sympy.sympify", "sympy.core.sympify.sympify", "sympy.parse_expr", "sympy.lambdify",
                 "sympy.parsing.sympy_parser.parse_expr", "sympy.utilities.lambdify.lambdify")},
    **{f"{m}.{n}": "loads a model (which may run its code) or reads and writes files"
       for m in ("keras.models", "keras.saving", "keras.src.saving.saving_api", "tf_keras.models",
                 "tensorflow.keras.models", "tensorflow.saved_model")
       for n in ("load_model", "load")},
    **{f"tensorflow.io.{n}": "reads or writes files" for n in ("read_file", "write_file", "gfile.GFile")},
    "keras.utils.get_file": "downloads files from the network",
    "uuid._get_command_stdout": "runs shell commands",
    "uuid._popen": "runs shell commands",
    "copyreg.add_extension": "changes the global pickle extension registry",
}  # fmt: skip

# Attribute names that make a dotted (protocol 4) global malicious wherever they occur.
_DANGEROUS_ATTRS = frozenset(
    ["system", "popen", "spawn", "eval", "exec", "execfile", "compile", "getattr", "setattr", "load", "loads",
     "import_module", "check_output", "check_call", "Popen", "run_path", "run_module", "write_text",
     "write_bytes", "unlink", "rmtree"]
)  # fmt: skip

# Functions that unpickle (or torch.load) a bytes argument: the analyser scans that argument.
NESTED_LOADERS: frozenset[str] = frozenset(
    ["pickle.loads", "pickle.load", "pickle._loads", "pickle._load", "_pickle.loads", "_pickle.load",
     "dill.loads", "dill.load", "dill._dill.loads", "dill._dill.load", "cloudpickle.loads", "cloudpickle.load",
     "cloudpickle.cloudpickle.loads", "joblib.load", "torch.load", "torch.serialization.load",
     "torch.storage._load_from_bytes", "numpy.load", "numpy.loads", "numpy.lib.npyio.load",
     "numpy.lib._npyio_impl.load", "pandas.read_pickle", "pandas.io.pickle.read_pickle"]
)  # fmt: skip

JOBLIB_ARRAY_WRAPPERS: frozenset[str] = frozenset(
    ["joblib.numpy_pickle.NumpyArrayWrapper", "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"]
)

_THIRD_PARTY_HINTS: dict[str, str] = {
    "sklearn": "scikit-learn",
    "xgboost": "XGBoost",
    "lightgbm": "LightGBM",
    "catboost": "CatBoost",
    "transformers": "Hugging Face transformers",
    "scipy": "SciPy",
    "pandas": "pandas",
    "keras": "Keras",
    "tensorflow": "TensorFlow",
    "torch": "PyTorch",
    "numpy": "NumPy",
    "joblib": "joblib",
}


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict for one global and the human reason behind it."""

    verdict: Verdict
    reason: str
    rule: str | None = None  # UNLISTED for "merely not on the allowlist": the only kind a policy may lift


UNLISTED = "unlisted-global"
"""The finding rule of a global that is suspicious only because no allowlist names it."""

SAFE = Classification(Verdict.CLEAN, "allowlisted")


def fix_imports(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names the way ``pickle.Unpickler`` does for protocols < 3."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def is_allowlisted(qualname: str) -> bool:
    return qualname in _SAFE_EXACT or qualname in SKLEARN_SAFE or any(p.fullmatch(qualname) for p in _SAFE_PATTERNS)


def _denylisted(parts: list[str]) -> str | None:
    """The reason if any tail of the dotted path names a known gadget module or function."""
    for i in range(len(parts)):
        tail = parts[i:]
        for j in range(1, len(tail) + 1):
            reason = _MALICIOUS_MODULES.get(".".join(tail[:j]))
            if reason is not None:
                return reason
        if len(tail) >= 2:
            reason = _MALICIOUS_NAMES.get(".".join(tail))
            if reason is not None:
                return reason
    return None


def classify(module: str, name: str, trusted: frozenset[str] = frozenset()) -> Classification:
    """Classify ``module.name`` as an unpickler would resolve it (protocol-4 dotted names included).

    ``trusted`` names extra globals a namespace accepts as data; they can only lift ``suspicious``, never
    ``malicious``: no configuration makes a code-execution gadget clean.
    """
    verdict = _classify(module, name)
    if verdict.verdict is Verdict.SUSPICIOUS and f"{module}.{name}" in trusted:
        return Classification(Verdict.CLEAN, "trusted by this namespace's scan settings")
    return verdict


def _classify(module: str, name: str) -> Classification:
    qualname = f"{module}.{name}"
    if is_allowlisted(qualname):
        return SAFE
    mod_parts = module.split(".")
    name_parts = name.split(".")
    parts = mod_parts + name_parts
    # "__builtin__"/"__builtins__" reach the builtins module whatever the protocol says.
    parts = ["builtins" if p in ("__builtin__", "__builtins__") else p for p in parts]
    reason = _denylisted(parts)
    if reason is not None:
        return Classification(Verdict.MALICIOUS, f"known code-execution gadget: {reason}")
    if any(len(p) > 4 and p.startswith("__") and p.endswith("__") for p in name_parts):
        return Classification(Verdict.MALICIOUS, "dotted name walks through a dunder attribute")
    if len(name_parts) > 1 and any(p in _DANGEROUS_ATTRS for p in name_parts):
        return Classification(Verdict.MALICIOUS, "dotted name reaches a code-execution attribute")
    if not module or not name or any(not p for p in parts):
        return Classification(Verdict.SUSPICIOUS, "malformed global name")
    hint = _THIRD_PARTY_HINTS.get(mod_parts[0])
    if mod_parts[0] == "__main__":
        why = "class from the pickling script's __main__; loading needs and runs that code"
    elif hint is not None:
        why = f"{hint} class/function outside the allowlist; loading imports and runs its code"
    else:
        why = "not in the allowlist; loading imports its module and runs its code"
    if len(name_parts) > 1:
        why += " (dotted protocol-4 name)"
    return Classification(Verdict.SUSPICIOUS, why, UNLISTED)


def trust_refusal(qualname: str) -> str | None:
    """Why ``qualname`` may not be trusted as data (a namespace policy, ``--trust-global``), or None if it may.

    Only a global that is suspicious merely for being unlisted can be trusted; a known gadget, a name that walks
    through a dunder or a code-execution attribute, or a malformed name never can.
    """
    module, _, name = qualname.rpartition(".")
    parts = qualname.split(".")
    if not module or not all(p.isidentifier() for p in parts):
        return "not a dotted module.name of Python identifiers"
    if any(p.startswith("__") and p.endswith("__") for p in parts):
        return "walks through a dunder name"
    verdict = _classify(module, name)
    if verdict.verdict is Verdict.MALICIOUS:
        return verdict.reason
    if _denylisted(["builtins" if p in ("__builtin__", "__builtins__") else p for p in parts]) is not None:
        return "names a known code-execution gadget"
    return None
