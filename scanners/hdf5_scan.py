"""HDF5 files: legacy Keras ``.h5`` models and the weights inside ``.keras`` archives, read with h5py.

h5py reads the structure (never the bulk data). A root ``model_config`` or ``training_config`` attribute
is a legacy Keras model: its JSON goes through the same rules as a ``.keras`` config
(:mod:`scanners.keras_scan`). Every object is visited without following links: external links and
datasets stored in (or mapped from) other files make a reader open files the archive does not hold,
``malicious`` when the path is absolute or climbs out with ``..``, else ``suspicious``. Every string
attribute is scanned by content, because PyTables unpickles attribute strings that look like pickles;
variable-length binary and opaque datasets (where PyTables keeps pickled objects) are ``suspicious``.
A file h5py cannot open, or whose structure it cannot read, is ``error``.

h5py parses the metadata with the HDF5 C library, and a corrupt file can make that library loop or
crash (mutation fuzzing finds such files); only the sandbox (``scanners.sandbox``, as the registry's
workers use it) bounds that, so untrusted HDF5 files belong there rather than in an in-process scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scanners.context import child
from scanners.errors import LimitExceeded, ScanError
from scanners.keras_scan import check_config, parse_json
from scanners.report import Verdict
from scanners.source import Window, WindowFile, random_access
from scanners.zip_scan import _traversal

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader

KERAS_ATTRS = ("model_config", "training_config")


def scan_hdf5(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    with random_access(reader, ctx.limits.max_spool, "HDF5 file") as window:
        return _scan(ctx, window, member, depth)


def _scan(ctx: Context, window: Window, member: str, depth: int) -> str:
    import h5py

    try:
        f = h5py.File(WindowFile(window), "r")
    except Exception as exc:
        raise ScanError(f"HDF5 file cannot be opened: {str(exc)[:200]}") from None
    with f:
        try:
            keras = [key for key in KERAS_ATTRS if key in f.attrs]
            for key in keras:
                _keras_attr(ctx, f, key, member)
            _walk(ctx, f, member, depth)
        except (RuntimeError, OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            # h5py's errors on a corrupt file: what was found so far stands, the rest is not analysed
            raise ScanError(f"HDF5 structure unreadable: {str(exc)[:200]}") from None
    return "keras-h5" if keras else "hdf5"


def _keras_attr(ctx: Context, f: Any, key: str, member: str) -> None:
    try:
        size = f.attrs.get_id(key).get_storage_size()
        if size > ctx.limits.max_config_bytes:
            raise LimitExceeded(f"{key} attribute of {size} bytes is larger than the limit")
        value = f.attrs[key]
    except LimitExceeded:
        raise
    except Exception as exc:
        ctx.add(Verdict.ERROR, f"Keras {key} attribute unreadable: {str(exc)[:200]}", member=member)
        return
    raw = value.tobytes() if isinstance(value, np.ndarray) and value.dtype.kind == "S" else value
    if isinstance(raw, np.bytes_ | bytes | str):
        doc, why = parse_json(bytes(raw) if not isinstance(raw, str) else raw, key)
    else:
        doc, why = None, f"{key} is not a string"
    if why is not None:
        ctx.add(Verdict.ERROR, f"Keras HDF5 {why}; the model is not analysed", member=member)
    elif key == "model_config" and check_config(ctx, doc, member, key) == 0:
        ctx.add(Verdict.SUSPICIOUS, "Keras HDF5 model_config names no Keras object", member=member)
    elif key != "model_config":
        check_config(ctx, doc, member, key)


def _outside(ctx: Context, member: str, path: str, target: str, what: str) -> None:
    bad = _traversal(target) or target.startswith("~")
    ctx.add(Verdict.MALICIOUS if bad else Verdict.SUSPICIOUS,
            f"{path}: {what} {target!r}{' outside the model' if bad else ''}", member=member, symbol=path)  # fmt: skip


def _walk(ctx: Context, f: Any, member: str, depth: int) -> None:
    """Visit every object once (hard links can make cycles) without following soft or external links."""
    import h5py

    seen = {h5py.h5o.get_info(f.id).addr}
    stack: list[tuple[str, Any]] = [("/", f)]
    count = 0
    while stack:
        path, group = stack.pop()
        count += _attrs(ctx, group, path, member, depth)
        for name in group:
            count += 1
            if count > ctx.limits.max_metadata_items:
                raise LimitExceeded(f"HDF5 file has more than {ctx.limits.max_metadata_items} objects")
            full = path.rstrip("/") + "/" + name
            try:
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    _outside(ctx, member, full, link.filename, "external link to file")
                    continue
                if isinstance(link, h5py.SoftLink):
                    continue  # a path inside this file: its target is visited through its own hard link
                obj = group[name]
                addr = h5py.h5o.get_info(obj.id).addr
            except Exception as exc:
                ctx.add(Verdict.ERROR, f"{full}: unreadable HDF5 object: {str(exc)[:200]}", member=member)
                continue
            if addr in seen:
                continue
            seen.add(addr)
            if isinstance(obj, h5py.Group):
                stack.append((full, obj))
            elif isinstance(obj, h5py.Dataset):
                _dataset(ctx, obj, full, member)
                count += _attrs(ctx, obj, full, member, depth)


def _odd_dtype(dt: np.dtype[Any]) -> str | None:
    import h5py

    if h5py.check_string_dtype(dt) is not None or h5py.check_ref_dtype(dt) is not None:
        return None
    if h5py.check_vlen_dtype(dt) is not None:
        return "variable-length binary data (where PyTables keeps pickled objects)"
    if dt.fields:
        return next((odd for odd in (_odd_dtype(t[0]) for t in dt.fields.values()) if odd), None)
    if dt.subdtype is not None:
        return _odd_dtype(dt.subdtype[0])
    if dt.kind == "V":
        return "opaque binary data"
    if dt.kind == "O":
        return "objects of an unknown kind"
    return None


def _dataset(ctx: Context, dset: Any, path: str, member: str) -> None:
    try:
        external = dset.external or []
        sources = [vs.file_name for vs in dset.virtual_sources()] if dset.is_virtual else []
        odd = _odd_dtype(dset.dtype)
    except Exception as exc:
        ctx.add(Verdict.ERROR, f"{path}: unreadable dataset: {str(exc)[:200]}", member=member)
        return
    for name, _offset, _size in external:
        target = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        _outside(ctx, member, path, target, "dataset reads its bytes from file")
    for target in sorted(set(sources) - {"."}):
        _outside(ctx, member, path, target, "virtual dataset maps data from file")
    if odd is not None:
        ctx.add(Verdict.SUSPICIOUS, f"{path}: dataset holds {odd}; not analysed", member=member, symbol=path)


def _attrs(ctx: Context, obj: Any, path: str, member: str, depth: int) -> int:
    """Scan every string attribute by content (JSON and names come out as text; pickles are analysed)."""
    names = list(obj.attrs)
    for name in names:
        where = child(member, f"{path}@{name}")
        try:
            size = obj.attrs.get_id(name).get_storage_size()
            if size > ctx.limits.max_config_bytes:
                ctx.add(Verdict.ERROR, f"{path}: attribute {name!r} of {size} bytes not analysed", member=member)
                continue
            value = obj.attrs[name]
        except Exception as exc:
            ctx.add(Verdict.ERROR, f"{path}: attribute {name!r} unreadable: {str(exc)[:200]}", member=member)
            continue
        strings = not isinstance(value, np.ndarray) or value.dtype.kind in "SUO"
        for item in (value.flat if isinstance(value, np.ndarray) else [value]) if strings else []:
            if isinstance(item, str):
                item = item.encode("utf-8", "surrogatepass")
            if isinstance(item, bytes) and item:
                ctx.scan_payload(item, where, depth + 1)
    return len(names)
