"""The scikit-learn classes a pickle may name and still be clean: a curated, versioned list.

Every sklearn model is a pickle, and a gate that calls every one "suspicious" teaches people to ignore it. So,
as skops' list of trusted types does, a fixed set of well-known estimators and the helper types their pickles
rebuild (trees, losses, KD-trees) count as plain data: unpickling them imports sklearn (installed, trusted code)
and sets attributes, nothing more. Left out on purpose: anything whose job is to hold and call a user-supplied
callable (``FunctionTransformer``, ``TransformedTargetRegressor``, custom scorers), so those stay suspicious;
and every callable a pickle passes *into* an allowed class is classified on its own, so ``Pipeline`` holding
``os.system`` is still malicious.

Private module paths move between sklearn releases, hence the version: the list was taken from the pickles
sklearn 1.9 writes. A namespace can trust more classes (``Limits.extra_safe_globals``), never one the policy
calls malicious.
"""

from __future__ import annotations

SKLEARN_ALLOWLIST_VERSION = "sklearn-1.9/2026-12"

_ESTIMATORS = {
    "calibration": ["CalibratedClassifierCV"],
    "cluster._agglomerative": ["AgglomerativeClustering"],
    "cluster._dbscan": ["DBSCAN"],
    "cluster._kmeans": ["KMeans", "MiniBatchKMeans"],
    "compose._column_transformer": ["ColumnTransformer"],
    "decomposition._incremental_pca": ["IncrementalPCA"],
    "decomposition._nmf": ["NMF"],
    "decomposition._pca": ["PCA"],
    "decomposition._truncated_svd": ["TruncatedSVD"],
    "discriminant_analysis": ["LinearDiscriminantAnalysis", "QuadraticDiscriminantAnalysis"],
    "dummy": ["DummyClassifier", "DummyRegressor"],
    "ensemble._bagging": ["BaggingClassifier", "BaggingRegressor"],
    "ensemble._forest": ["ExtraTreesClassifier", "ExtraTreesRegressor", "RandomForestClassifier",
                         "RandomForestRegressor"],
    "ensemble._gb": ["GradientBoostingClassifier", "GradientBoostingRegressor"],
    "ensemble._hist_gradient_boosting.gradient_boosting": ["HistGradientBoostingClassifier",
                                                           "HistGradientBoostingRegressor"],
    "ensemble._hist_gradient_boosting.binning": ["_BinMapper"],
    "ensemble._hist_gradient_boosting.predictor": ["TreePredictor"],
    "ensemble._iforest": ["IsolationForest"],
    "ensemble._stacking": ["StackingClassifier", "StackingRegressor"],
    "ensemble._voting": ["VotingClassifier", "VotingRegressor"],
    "ensemble._weight_boosting": ["AdaBoostClassifier", "AdaBoostRegressor"],
    "feature_extraction._dict_vectorizer": ["DictVectorizer"],
    "feature_extraction.text": ["CountVectorizer", "HashingVectorizer", "TfidfTransformer", "TfidfVectorizer"],
    "feature_selection._univariate_selection": ["SelectKBest", "f_classif", "f_regression", "chi2"],
    "feature_selection._variance_threshold": ["VarianceThreshold"],
    "impute._base": ["SimpleImputer"],
    "impute._knn": ["KNNImputer"],
    "linear_model._base": ["LinearRegression"],
    "linear_model._bayes": ["BayesianRidge"],
    "linear_model._coordinate_descent": ["ElasticNet", "ElasticNetCV", "Lasso", "LassoCV"],
    "linear_model._huber": ["HuberRegressor"],
    "linear_model._logistic": ["LogisticRegression", "LogisticRegressionCV"],
    "linear_model._passive_aggressive": ["PassiveAggressiveClassifier"],
    "linear_model._perceptron": ["Perceptron"],
    "linear_model._ridge": ["Ridge", "RidgeCV", "RidgeClassifier"],
    "linear_model._sgd_fast": ["Hinge", "ModifiedHuber", "SquaredHinge", "EpsilonInsensitive",
                               "SquaredEpsilonInsensitive"],
    "linear_model._stochastic_gradient": ["SGDClassifier", "SGDRegressor"],
    "metrics._dist_metrics": ["EuclideanDistance64", "ManhattanDistance64", "MinkowskiDistance64", "newObj"],
    "multiclass": ["OneVsRestClassifier"],
    "naive_bayes": ["BernoulliNB", "ComplementNB", "GaussianNB", "MultinomialNB"],
    "neighbors._ball_tree": ["BallTree", "newObj"],
    "neighbors._classification": ["KNeighborsClassifier"],
    "neighbors._kd_tree": ["KDTree", "newObj"],
    "neighbors._regression": ["KNeighborsRegressor"],
    "neighbors._unsupervised": ["NearestNeighbors"],
    "neural_network._multilayer_perceptron": ["MLPClassifier", "MLPRegressor"],
    "neural_network._stochastic_optimizers": ["AdamOptimizer", "SGDOptimizer"],
    "pipeline": ["FeatureUnion", "Pipeline"],
    "preprocessing._data": ["Binarizer", "MaxAbsScaler", "MinMaxScaler", "Normalizer", "PowerTransformer",
                            "QuantileTransformer", "RobustScaler", "StandardScaler"],
    "preprocessing._discretization": ["KBinsDiscretizer"],
    "preprocessing._encoders": ["OneHotEncoder", "OrdinalEncoder"],
    "preprocessing._label": ["LabelBinarizer", "LabelEncoder", "MultiLabelBinarizer"],
    "preprocessing._polynomial": ["PolynomialFeatures"],
    "svm._classes": ["LinearSVC", "LinearSVR", "NuSVC", "OneClassSVM", "SVC", "SVR"],
    "tree._classes": ["DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
                      "ExtraTreeRegressor"],
    "tree._tree": ["Tree"],
    "utils._bunch": ["Bunch"],
    "_loss._loss": ["CyHalfBinomialLoss", "CyHalfMultinomialLoss", "CyHalfSquaredError", "CyAbsoluteError",
                    "CyHalfPoissonLoss"],
    "_loss.link": ["Interval", "IdentityLink", "LogitLink", "LogLink", "MultinomialLogit"],
    "_loss.loss": ["HalfBinomialLoss", "HalfMultinomialLoss", "HalfSquaredError", "AbsoluteError",
                   "HalfPoissonLoss"],
}  # fmt: skip

SKLEARN_SAFE: frozenset[str] = frozenset(
    f"sklearn.{module}.{name}" for module, names in _ESTIMATORS.items() for name in names
)
"""Qualified names (as a pickle's GLOBAL names them) that count as data."""
