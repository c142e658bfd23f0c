"""Keras models (``.keras`` archives, legacy HDF5) and HDF5 files in general, analysed without Keras.

Every file here is built by hand in the layout Keras writes; none is ever loaded by a framework. The
Lambda payload is a harmless marshalled ``lambda x: x`` in the shape Keras serializes it.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from scanners import Limits, Report, Verdict, scan_bytes, scan_path
from tests.scanners.corpus import os_system_pickle

LAMBDA_CODE = (
    "4wEAAAAAAAAAAAAAAAEAAAADAAAA8wYAAACXAHwAUwApAU6pACkB2gF4cwEAAAAg+gg8c3RyaW5nPvoIPGxhbWJkYT5y"
    "BQAAAAIAAABzBgAAAIAAyAGAAPMAAAAA"
)


def obj(module: str | None, cls: str, config: Any, registered: str | None = None) -> dict[str, Any]:
    return {"module": module, "class_name": cls, "config": config, "registered_name": registered}


def dense(name: str, units: int, activation: str = "relu") -> dict[str, Any]:
    config = {
        "name": name, "trainable": True, "dtype": obj("keras", "DTypePolicy", {"name": "float32"}),
        "units": units, "activation": activation, "use_bias": True,
        "kernel_initializer": obj("keras.initializers", "GlorotUniform", {"seed": None}),
        "bias_initializer": obj("keras.initializers", "Zeros", {}), "kernel_regularizer": None,
    }  # fmt: skip
    layer = obj("keras.layers", "Dense", config)
    layer["build_config"] = {"input_shape": [None, 4]}
    return layer


def keras_config(*extra: dict[str, Any]) -> dict[str, Any]:
    """A Sequential model as Keras 3 writes ``config.json``, with ``extra`` layers appended."""
    layers = [
        obj("keras.layers", "InputLayer", {"batch_shape": [None, 4], "dtype": "float32", "name": "input_layer"}),
        dense("dense", 8),
        dense("dense_1", 1, "sigmoid"),
        *extra,
    ]
    model = obj("keras", "Sequential", {"name": "sequential", "trainable": True, "layers": layers})
    model["compile_config"] = {
        "optimizer": obj("keras.optimizers", "Adam", {"name": "adam", "learning_rate": 0.001}),
        "loss": obj("keras.losses", "function", "binary_crossentropy", "binary_crossentropy"),
        "metrics": ["accuracy"], "run_eagerly": False, "jit_compile": False,
    }  # fmt: skip
    return model


def weights_h5() -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, shape in (("dense", (4, 8)), ("dense_1", (8, 1))):
            group = f.create_group(f"layers/{name}/vars")
            group.create_dataset("0", data=np.zeros(shape, np.float32))
            group.create_dataset("1", data=np.zeros(shape[1:], np.float32))
        f.create_group("optimizer/vars").create_dataset("0", data=np.array(0, np.int64))
    return buf.getvalue()


def keras_file(
    config: dict[str, Any] | bytes,
    *,
    metadata: dict[str, Any] | None = None,
    compression: int = zipfile.ZIP_STORED,
    extra: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    meta = {"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"} if metadata is None else metadata
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", config if isinstance(config, bytes) else json.dumps(config))
        z.writestr("model.weights.h5", weights_h5())
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def legacy_h5(model_config: Any, **attrs: Any) -> bytes:
    """A tf.keras 2 ``model.save('x.h5')`` layout: config attributes and grouped weights."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = model_config if isinstance(model_config, bytes | str) else json.dumps(model_config)
        for key, value in attrs.items():
            f.attrs[key] = value
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"dense"])
        group = weights.create_group("dense")
        group.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        group.create_dataset("dense/kernel:0", data=np.zeros((4, 2), np.float32))
        group.create_dataset("dense/bias:0", data=np.zeros(2, np.float32))
    return buf.getvalue()


def legacy_config(*layers: dict[str, Any]) -> dict[str, Any]:
    base = [{"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "linear"}}]
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": base + list(layers)}}


def scan(data: bytes, limits: Limits | None = None) -> Report:
    report = scan_bytes(data, limits=limits)
    assert not any("internal scanner error" in f.message for f in report.findings), report.findings
    return report


def messages(report: Report) -> str:
    return "\n".join(f.message for f in report.findings)


# -- .keras archives --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_plain_keras_model_is_clean(compression: int) -> None:
    report = scan(keras_file(keras_config(), compression=compression))
    assert (report.verdict, report.format) == (Verdict.CLEAN, "keras"), report.findings


def test_a_renamed_keras_file_is_still_analysed(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(keras_file(keras_config(obj("keras.layers", "Lambda", {"name": "l", "function": {}}))))
    report = scan_path(path)
    assert (report.verdict, report.format) == (Verdict.MALICIOUS, "keras"), report.findings


def test_a_lambda_layer_is_malicious() -> None:
    fn = {"class_name": "__lambda__", "config": {"value": [LAMBDA_CODE, None, None]}}
    report = scan(keras_file(keras_config(obj("keras.layers", "Lambda", {"name": "lambda", "function": fn}))))
    assert report.verdict is Verdict.MALICIOUS
    assert "Lambda layer 'lambda': its function is marshalled Python bytecode" in messages(report)


def test_a_lambda_calling_a_keras_function_is_malicious() -> None:
    fn = obj("keras.models", "function", "load_model", "function")
    lam = obj("keras.layers", "Lambda", {"name": "unsafe", "function": fn, "arguments": {"safe_mode": False}})
    report = scan(keras_file(keras_config(lam)))
    assert report.verdict is Verdict.MALICIOUS
    assert "it calls keras.models.load_model" in messages(report) and "load_model" in messages(report)


def test_a_savedmodel_layer_is_suspicious() -> None:
    layer = obj("keras.layers", "TFSMLayer", {"name": "sm", "filepath": "/models/other"})
    report = scan(keras_file(keras_config(layer)))
    assert report.verdict is Verdict.SUSPICIOUS and "'/models/other'" in messages(report)


def test_a_lambda_anywhere_in_the_config_is_malicious() -> None:
    layer = dense("dense_2", 4)
    layer["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": [LAMBDA_CODE, None, None]}}
    assert scan(keras_file(keras_config(layer))).verdict is Verdict.MALICIOUS


def test_custom_objects_are_suspicious_and_named() -> None:
    custom = obj("my_pkg.layers", "FancyAttention", {"name": "fancy"}, "my_pkg>FancyAttention")
    report = scan(keras_file(keras_config(custom)))
    assert report.verdict is Verdict.SUSPICIOUS
    (finding,) = report.findings
    assert "'my_pkg.layers'" in finding.message and "FancyAttention" in finding.message
    assert finding.symbol == "my_pkg.layers.FancyAttention"


def test_a_registered_name_outside_keras_is_suspicious() -> None:
    sneaky = obj("keras.layers", "Dense", {"name": "d"}, "evil_pkg>Dense")
    report = scan(keras_file(keras_config(sneaky)))
    assert report.verdict is Verdict.SUSPICIOUS and "evil_pkg" in messages(report)


@pytest.mark.parametrize(
    "module,name,verdict",
    [
        ("keras.config", "enable_unsafe_deserialization", Verdict.MALICIOUS),
        ("keras.utils", "get_file", Verdict.MALICIOUS),
        ("keras.src.backend.common.global_state", "set_global_attribute", Verdict.MALICIOUS),
        ("os", "system", Verdict.MALICIOUS),
        ("builtins", "exec", Verdict.MALICIOUS),
        ("my_pkg.activations", "swishy", Verdict.SUSPICIOUS),
        ("keras.activations", "relu", Verdict.CLEAN),
    ],
)
def test_function_references_are_judged(module: str, name: str, verdict: Verdict) -> None:
    layer = dense("dense_2", 4)
    layer["config"]["activation"] = obj(module, "function", name, name)
    report = scan(keras_file(keras_config(layer)))
    assert report.verdict is verdict, report.findings


def test_without_keras_metadata_it_is_just_a_zip() -> None:
    lambda_layer = obj("keras.layers", "Lambda", {"name": "l", "function": {}})
    report = scan(keras_file(keras_config(lambda_layer), metadata={"saved_by": "someone"}))
    assert (report.verdict, report.format) == (Verdict.CLEAN, "zip")


@pytest.mark.parametrize(
    "config,words",
    [
        (b"{not json", "config.json is not valid JSON"),
        (b"\xff\xfe{}", "config.json is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "config.json is not valid JSON"),
    ],
)
def test_an_unreadable_config_is_an_error(config: bytes, words: str) -> None:
    report = scan(keras_file(config))
    assert report.verdict is Verdict.ERROR and words in messages(report)


def test_a_config_larger_than_the_limit_is_an_error() -> None:
    report = scan(keras_file(keras_config()), Limits(max_config_bytes=200))
    assert report.verdict is Verdict.ERROR and "config.json could not be read" in messages(report)


def test_a_config_naming_nothing_is_suspicious() -> None:
    assert scan(keras_file({"layers": []})).verdict is Verdict.SUSPICIOUS


def test_a_second_config_json_cannot_hide_a_lambda() -> None:
    evil = json.dumps(keras_config(obj("keras.layers", "Lambda", {"name": "l", "function": {}}))).encode()
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = keras_file(keras_config(), extra=[("config.json", evil)])
    report = scan(data)
    assert report.verdict is Verdict.MALICIOUS
    assert "duplicate member name 'config.json'" in messages(report)


def test_a_compressed_keras_archive_is_analysed() -> None:
    evil = keras_config(obj("os_tools", "Shell", {"name": "s"}))
    report = scan(gzip.compress(keras_file(evil, compression=zipfile.ZIP_DEFLATED)))
    assert (report.verdict, report.format) == (Verdict.SUSPICIOUS, "gzip:keras"), report.findings


# -- legacy Keras HDF5 ------------------------------------------------------------------------------------------
def test_a_plain_legacy_model_is_clean() -> None:
    report = scan(legacy_h5(legacy_config()))
    assert (report.verdict, report.format) == (Verdict.CLEAN, "keras-h5"), report.findings


def test_a_legacy_lambda_is_malicious() -> None:
    layer = {"class_name": "Lambda", "config": {"name": "lam", "function": [LAMBDA_CODE, None, None],
                                                "function_type": "lambda", "module": "__main__"}}  # fmt: skip
    report = scan(legacy_h5(legacy_config(layer)))
    assert report.verdict is Verdict.MALICIOUS and "Lambda layer 'lam'" in messages(report)


@pytest.mark.parametrize(
    "layer,verdict",
    [
        ({"class_name": "Custom>Attention", "config": {"name": "a"}}, Verdict.SUSPICIOUS),
        ({"class_name": "TFOpLambda", "config": {"name": "t", "function": "io.write_file"}}, Verdict.MALICIOUS),
        ({"class_name": "TFOpLambda", "config": {"name": "t", "function": "math.add"}}, Verdict.CLEAN),
    ],
)
def test_legacy_layers_are_judged(layer: dict[str, Any], verdict: Verdict) -> None:
    assert scan(legacy_h5(legacy_config(layer))).verdict is verdict


def test_a_legacy_training_config_is_analysed() -> None:
    training = {"loss": {"class_name": "function", "module": "subprocess", "config": "check_output"}}
    report = scan(legacy_h5(legacy_config(), training_config=json.dumps(training)))
    assert report.verdict is Verdict.MALICIOUS and "subprocess.check_output" in messages(report)


def test_a_legacy_config_that_is_not_json_is_an_error() -> None:
    report = scan(legacy_h5("{broken"))
    assert report.verdict is Verdict.ERROR and "model_config is not valid JSON" in messages(report)


# -- HDF5 in general --------------------------------------------------------------------------------------------
def h5(build: Any) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("data", data=np.arange(10, dtype=np.int32))
        build(f)
    return buf.getvalue()


def test_a_plain_hdf5_file_is_clean() -> None:
    report = scan(h5(lambda f: f.create_dataset("names", data=["a", "b"], dtype=h5py.string_dtype())))
    assert (report.verdict, report.format) == (Verdict.CLEAN, "hdf5"), report.findings


def test_an_hdf5_file_h5py_cannot_open_is_an_error() -> None:
    report = scan(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    assert report.verdict is Verdict.ERROR and "HDF5 file cannot be opened" in messages(report)


@pytest.mark.parametrize(
    "build,verdict,words",
    [
        (lambda f: f.__setitem__("x", h5py.ExternalLink("/etc/passwd.h5", "/")), Verdict.MALICIOUS, "/etc/passwd.h5"),
        (lambda f: f.__setitem__("x", h5py.ExternalLink("../up.h5", "/")), Verdict.MALICIOUS, "outside the model"),
        (lambda f: f.__setitem__("x", h5py.ExternalLink("other.h5", "/")), Verdict.SUSPICIOUS, "external link"),
        (lambda f: f.create_dataset("e", (4,), "f4", external=[("../../x.bin", 0, 16)]), Verdict.MALICIOUS,
         "reads its bytes from file"),
        (lambda f: f.create_dataset("e", (4,), "f4", external=[("side.bin", 0, 16)]), Verdict.SUSPICIOUS,
         "side.bin"),
        (lambda f: f.create_dataset("v", (1,), h5py.vlen_dtype(np.uint8)), Verdict.SUSPICIOUS,
         "variable-length binary"),
        (lambda f: f.create_dataset("o", data=np.void(b"\x80\x04N.")), Verdict.SUSPICIOUS, "opaque"),
        (lambda f: f.attrs.__setitem__("meta", np.bytes_(os_system_pickle(4))), Verdict.MALICIOUS, "system"),
    ],
)  # fmt: skip
def test_hdf5_contents_are_judged(build: Any, verdict: Verdict, words: str) -> None:
    report = scan(h5(build))
    assert report.verdict is verdict, report.findings
    assert words in messages(report)


def test_links_and_cycles_are_not_followed() -> None:
    def build(f: h5py.File) -> None:
        group = f.create_group("a/b")
        group["loop"] = f["a"]  # a hard-link cycle
        f["soft"] = h5py.SoftLink("/a")
        f["dangling"] = h5py.SoftLink("/nowhere")

    assert scan(h5(build)).verdict is Verdict.CLEAN


def test_pickled_attributes_in_a_benign_pickle_are_clean() -> None:
    report = scan(h5(lambda f: f.attrs.__setitem__("meta", np.bytes_(pickle.dumps({"a": [1, 2]})))))
    assert report.verdict is Verdict.CLEAN, report.findings


def test_the_object_limit_applies() -> None:
    data = h5(lambda f: [f.create_group(f"g{i}") for i in range(20)])
    assert scan(data, Limits(max_metadata_items=10)).verdict is Verdict.ERROR


@pytest.mark.parametrize("cut", [100, 400, 1000, -200])
def test_truncated_hdf5_is_never_clean(cut: int) -> None:
    data = legacy_h5(legacy_config())
    assert scan(data[:cut]).verdict is not Verdict.CLEAN
