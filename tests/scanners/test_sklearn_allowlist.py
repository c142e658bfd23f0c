"""Ordinary scikit-learn models are clean; callables, custom classes and gadgets inside them are not."""

from __future__ import annotations

import io
import pickle
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from scanners import Limits, Verdict, scan_bytes
from scanners.globals_policy import classify
from scanners.sklearn_allowlist import SKLEARN_ALLOWLIST_VERSION, SKLEARN_SAFE

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
Y = (X[:, 0] > 0).astype(int)


def fitted() -> dict[str, Any]:
    return {
        "logreg": LogisticRegression().fit(X, Y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y),
        "gboost": GradientBoostingClassifier(n_estimators=3).fit(X, Y),
        "histgb": HistGradientBoostingClassifier(max_iter=3).fit(X, Y),
        "tree": DecisionTreeClassifier().fit(X, Y),
        "sgd": SGDClassifier().fit(X, Y),
        "knn": KNeighborsClassifier().fit(X, Y),
        "svc": SVC().fit(X, Y),
        "mlp": MLPClassifier(hidden_layer_sizes=(3,), max_iter=5).fit(X, Y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y),
        "columns": ColumnTransformer([("s", StandardScaler(), [0, 1]), ("o", OneHotEncoder(), [2])]).fit(X.round()),
        "tfidf": TfidfVectorizer().fit(["alpha beta gamma", "beta delta"]),
    }


def joblib_dump(obj: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_well_known_estimators_are_clean_as_pickle_and_joblib() -> None:
    for name, model in fitted().items():
        for how, data in (("pickle", pickle.dumps(model, protocol=5)), ("joblib", joblib_dump(model))):
            report = scan_bytes(data, name=f"{name}.pkl")
            assert report.verdict is Verdict.CLEAN, (name, how, [f.message for f in report.findings])


def test_a_callable_holder_stays_suspicious_and_a_gadget_inside_stays_malicious() -> None:
    holder = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(np.abs(X), Y)
    report = scan_bytes(pickle.dumps(holder), name="ft.pkl")
    assert report.verdict is Verdict.SUSPICIOUS
    assert any("FunctionTransformer" in (f.symbol or "") for f in report.findings)

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, ("true",))

    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)
    pipe.steps.append(("evil", Evil()))  # type: ignore[arg-type]
    assert scan_bytes(pickle.dumps(pipe), name="p.pkl").verdict is Verdict.MALICIOUS


def test_namespace_trust_lifts_suspicious_never_malicious() -> None:
    custom = pickle.dumps(FunctionTransformer(np.log1p))
    assert scan_bytes(custom, name="c.pkl").verdict is Verdict.SUSPICIOUS
    trusted = frozenset({"sklearn.preprocessing._function_transformer.FunctionTransformer", "numpy.log1p",
                         "os.system", "builtins.eval"})
    assert scan_bytes(custom, name="c.pkl", limits=Limits(extra_safe_globals=trusted)).verdict is Verdict.CLEAN
    for gadget in (("os", "system"), ("builtins", "eval")):
        assert classify(*gadget, trusted).verdict is Verdict.MALICIOUS


def test_out_of_band_buffers_with_safe_globals_are_clean() -> None:
    data = pickle.dumps(np.arange(10.0), protocol=5, buffer_callback=lambda _buffer: False)
    assert b"\x97" in data  # NEXT_BUFFER
    assert scan_bytes(data, name="oob.pkl").verdict is Verdict.CLEAN


def test_the_list_is_versioned_and_names_real_sklearn_classes() -> None:
    import importlib

    assert SKLEARN_ALLOWLIST_VERSION.startswith("sklearn-")
    for qualname in sorted(SKLEARN_SAFE):
        module, _, name = qualname.rpartition(".")
        assert hasattr(importlib.import_module(module), name), qualname
