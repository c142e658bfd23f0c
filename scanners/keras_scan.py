"""Keras model configs (``.keras`` v3 archives and legacy HDF5 ``model_config``), read without Keras.

Loading a Keras model rebuilds every object its config names. A ``Lambda`` layer carries its function
as marshalled Python bytecode (CVE-2024-3660) or names a function to call with arguments from the config
(CVE-2025-9906), so loading it runs code: ``malicious``. Objects whose ``module`` lies outside ``keras``,
or whose ``registered_name`` belongs to another package, make Keras import that module: custom code,
``suspicious`` (the finding names module and class). Function references to known gadgets
(``os.system``; inside Keras ``enable_unsafe_deserialization``, ``set_global_attribute``, ``get_file``,
``load_model``: the CVE-2025-1550, -8747 and -9906 safe-mode bypasses) are ``malicious``.

``safe_mode``: ``keras.saving.load_model(..., safe_mode=True)`` (the default in Keras 3) refuses to
deserialize ``Lambda`` bytecode; ``safe_mode=False`` (or an earlier
``keras.config.enable_unsafe_deserialization()``) runs it, and legacy HDF5 loading ignores the setting
(CVE-2025-9905). Custom modules are imported either way. The verdict here describes the file, so it
never depends on the setting a loader might use.

A ``.keras`` file is recognised by content: a zip holding ``config.json`` and a ``metadata.json`` with a
``keras_version``, whatever its name. The zip scanner hands both documents here; every member (the
``model.weights.h5`` included) is still scanned on its own.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from scanners.globals_policy import classify
from scanners.report import Verdict

if TYPE_CHECKING:
    from scanners.context import Context

KERAS_GADGETS = frozenset(
    [
        "enable_unsafe_deserialization",
        "set_global_attribute",
        "get_file",
        "load_model",
        "load_weights",
        "save_model",
        "save_weights",
    ]
)
"""Functions inside Keras that a config must never name: they undo safe mode or touch files and URLs."""

TF_OP_GADGETS = re.compile(r"(^|\.)(io|gfile|raw_ops|py_func|py_function|numpy_function|load_op_library|"
                           r"load_library|summary|saved_model)(\.|$)")  # fmt: skip
"""TensorFlow functions a legacy ``TFOpLambda`` layer must never call by name: files, Python, libraries."""

MAX_JSON_NESTING = 1000


def is_keras_module(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def parse_json(raw: bytes | str, what: str) -> tuple[Any, str | None]:
    """(document, None) or (None, why it is not JSON)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text), None
    except UnicodeDecodeError as exc:
        return None, f"{what} is not UTF-8 (byte {exc.start})"
    except (ValueError, RecursionError) as exc:
        return None, f"{what} is not valid JSON: {str(exc)[:200]}"


def _lambda_detail(config: object) -> str:
    fn = config.get("function") if isinstance(config, dict) else None
    if isinstance(fn, dict) and fn.get("class_name") != "__lambda__":
        return f"it calls {fn.get('module')}.{fn.get('config')}, imported when the model loads"
    if isinstance(fn, str) and isinstance(config, dict) and config.get("function_type") == "function":
        return f"it calls {config.get('module')}.{fn}, imported when the model loads"
    if fn is not None:
        return "its function is marshalled Python bytecode, run when the model loads"
    return "it wraps a Python function that runs when the model loads"


def _function_ref(obj: dict[str, Any], module: str) -> tuple[Verdict, str] | None:
    name = obj.get("config")
    if not isinstance(name, str):
        return None
    if is_keras_module(module):
        if name in KERAS_GADGETS:
            return Verdict.MALICIOUS, f"names Keras function {module}.{name}, which undoes safe mode or fetches files"
        return None
    found = classify(module, name)
    if found.verdict is Verdict.MALICIOUS:
        return Verdict.MALICIOUS, f"names function {module}.{name} ({found.reason})"
    return Verdict.SUSPICIOUS, f"names function {module}.{name} from outside Keras (imported on load)"


def _judge(obj: dict[str, Any]) -> list[tuple[Verdict, str]]:
    """What one serialized object (a dict with ``class_name``) makes a loader do."""
    cls = obj.get("class_name")
    module = obj.get("module")
    registered = obj.get("registered_name")
    config = obj.get("config")
    out: list[tuple[Verdict, str]] = []
    name = config.get("name") if isinstance(config, dict) else None
    label = f"{cls!r}" + (f" ({name!r})" if name is not None else "")
    if cls == "Lambda":
        out.append((Verdict.MALICIOUS, f"Lambda layer {name!r}: {_lambda_detail(config)}"))
    elif cls == "__lambda__":
        out.append((Verdict.MALICIOUS, "a Python lambda serialized as marshalled bytecode"))
    elif cls in ("TFOpLambda", "SlicingOpLambda") and isinstance(config, dict):
        fn = config.get("function")
        if isinstance(fn, str) and TF_OP_GADGETS.search(fn):
            out.append((Verdict.MALICIOUS, f"{cls} layer {label} calls TensorFlow function {fn!r}"))
    elif cls == "TFSMLayer":
        where = config.get("filepath") if isinstance(config, dict) else None
        out.append((Verdict.SUSPICIOUS, f"TFSMLayer {label} loads a TensorFlow SavedModel from {where!r}"))
    if isinstance(module, str):
        if cls == "function":
            ref = _function_ref(obj, module)
            if ref is not None:
                out.append(ref)
        elif not is_keras_module(module):
            out.append((Verdict.SUSPICIOUS, f"custom object {label} from module {module!r} (imported on load)"))
    elif module is not None:
        out.append((Verdict.SUSPICIOUS, f"object {label} has a non-string module {module!r}"))
    package = None
    if isinstance(registered, str) and ">" in registered:
        package = registered.split(">", 1)[0]
    elif isinstance(cls, str) and ">" in cls:
        package = cls.split(">", 1)[0]
    module_reported = isinstance(module, str) and not is_keras_module(module)
    if package is not None and not is_keras_module(package) and not module_reported:
        out.append((Verdict.SUSPICIOUS, f"registered custom object {registered or cls!r} from package {package!r}"))
    return out


def check_config(ctx: Context, document: object, member: str, where: str) -> int:
    """Walk a whole config document; returns how many objects it names."""
    stack: list[tuple[object, int]] = [(document, 0)]
    objects = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_NESTING:
            ctx.add(Verdict.ERROR, f"{where} is nested deeper than {MAX_JSON_NESTING} levels", member=member)
            return objects
        if isinstance(node, dict):
            if "class_name" in node:
                objects += 1
                for verdict, message in _judge(node):
                    ctx.add(verdict, f"{where}: {message}", member=member, symbol=_symbol(node))
            stack.extend((v, depth + 1) for v in reversed(node.values()))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in reversed(node))
    return objects


def _symbol(obj: dict[str, Any]) -> str | None:
    cls, module = obj.get("class_name"), obj.get("module")
    if not isinstance(cls, str):
        return None
    return f"{module}.{cls}" if isinstance(module, str) else cls


def check_archive(ctx: Context, configs: list[bytes], metadata: list[bytes], member: str) -> bool:
    """Analyse a zip's ``config.json`` copies if its ``metadata.json`` says Keras wrote it; True if so."""
    versions = []
    for raw in metadata:
        doc, _why = parse_json(raw, "metadata.json")
        if isinstance(doc, dict) and isinstance(doc.get("keras_version"), str):
            versions.append(doc["keras_version"])
    if not versions:
        return False
    for raw in configs:
        doc, why = parse_json(raw, "config.json")
        if why is not None:
            ctx.add(Verdict.ERROR, f"Keras archive: {why}; the model is not analysed", member=member)
        elif check_config(ctx, doc, member, "config.json") == 0:
            ctx.add(Verdict.SUSPICIOUS, "Keras archive: config.json names no Keras object", member=member)
    if not configs:
        ctx.add(Verdict.ERROR, "Keras archive: config.json could not be read", member=member)
    return True
