"""Any scikit-learn density estimator as a model family, without writing code.

::

    model:
      kind: sklearn
      estimator: sklearn.mixture.BayesianGaussianMixture
      params: {n_components: 3, weight_concentration_prior: 0.01}

The estimator needs ``fit``, ``sample`` and ``score_samples`` (``GaussianMixture``,
``BayesianGaussianMixture`` and ``KernelDensity`` have them). A spec is data, not code: it may
name a class under ``sklearn.`` or one that a plug-in registered (entry point group
``modelcollapse.estimators``, or :func:`register_estimator`); anything else is refused at
validation, before a module is imported. Randomness comes from the chain's streams:
``random_state`` is set from the fit stream at each fit, and every ``sample`` call draws
through a generator seeded from the sample stream (scikit-learn's own ``sample`` would reuse
the stored seed and freeze the chain).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Annotated, Any, Optional

import numpy as np
from pydantic import AfterValidator

from ..registry import Registry, entry_point_group
from .base import RNG, BaseModel, FitError, draw
from .family import register_model, same_class

#: Estimator classes a spec may name besides ``sklearn.*``, keyed by "module.QualName".
ESTIMATORS: Registry[type] = Registry("estimator")
_NEEDED = ("fit", "sample", "score_samples")


def register_estimator(cls: type) -> type:
    """Allow ``model: {kind: sklearn, estimator: "<module>.<Class>"}`` to name ``cls``."""
    if not isinstance(cls, type) or any(not callable(getattr(cls, m, None)) for m in _NEEDED):
        raise TypeError(f"{cls!r} cannot be an estimator: it needs a class with {', '.join(_NEEDED)}")
    name = f"{cls.__module__}.{cls.__qualname__}"
    ESTIMATORS.add(name, cls, replace=same_class(ESTIMATORS._items.get(name), cls), module=cls.__module__)
    return cls


def resolve_estimator(name: str) -> type:
    """The class a spec names; refuses anything that is neither ``sklearn.*`` nor registered."""
    if name in ESTIMATORS:
        return ESTIMATORS.get(name)
    module, _, attr = str(name).rpartition(".")
    if not (module == "sklearn" or module.startswith("sklearn.")) or not attr.isidentifier():
        allowed = ", ".join(ESTIMATORS.names()) or "none registered"
        raise ValueError(f"{name!r} is not allowed: a spec may name a scikit-learn class (sklearn.<module>.<Class>) "
                         f"or an estimator a plug-in registered ({allowed})")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise ValueError(f"{name!r}: scikit-learn has no such class") from None
    if not isinstance(cls, type) or any(not callable(getattr(cls, m, None)) for m in _NEEDED):
        raise ValueError(f"{name!r} is not a density estimator: it needs {', '.join(_NEEDED)} "
                         "(e.g. sklearn.mixture.GaussianMixture or sklearn.neighbors.KernelDensity)")
    return cls


def _estimator(name: str) -> str:
    resolve_estimator(name)
    return name


def _is_mixture(cls: type) -> bool:
    from sklearn.mixture._base import BaseMixture

    return issubclass(cls, BaseMixture)


def _is_gaussian_kde(cls: type, params: dict[str, Any]) -> bool:
    from sklearn.neighbors import KernelDensity

    return issubclass(cls, KernelDensity) and params.get("kernel", "gaussian") == "gaussian"


class SklearnDensity(BaseModel):
    """A scikit-learn density estimator, refitted from scratch each generation.

    Parameters
    ----------
    estimator : str
        Dotted path of the class, ``sklearn.mixture.GaussianMixture`` by default.
    params : dict or None
        Its constructor arguments, except ``random_state`` (the chain sets it).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = SklearnDensity(estimator="sklearn.neighbors.KernelDensity", params={"bandwidth": 0.5})
    >>> m.fit(rng.normal(size=(200, 1)), rng=rng).sample(4, rng=rng).shape
    (4, 1)
    """

    default_metrics = ("nll", "w1", "w2", "l2_distance", "tail_mass", "variance_ratio")

    def __init__(self, *, estimator: Annotated[str, AfterValidator(_estimator)] = "sklearn.mixture.GaussianMixture",
                 params: Optional[dict[str, Any]] = None) -> None:
        self.estimator = estimator
        self.params = params

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        return train_size * example_nbytes  # the training data it keeps (a KDE needs it; it is small for others)

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return 8 * 10 * train_size  # the estimator's working arrays

    @classmethod
    def check_params(cls, p: dict[str, Any]) -> None:
        params = dict(p.get("params") or {})
        if "random_state" in params:
            raise ValueError("params: random_state is set by the chain from its random streams; remove it")
        try:
            est = resolve_estimator(p["estimator"])(**params)
        except TypeError as exc:
            raise ValueError(f"params: {exc}") from None
        if hasattr(est, "_validate_params"):  # scikit-learn's own declarative check of each value
            try:
                est._validate_params()
            except (ValueError, TypeError) as exc:
                raise ValueError(f"params: {exc}") from None

    @classmethod
    def supports(cls, capability: str, params: dict[str, Any]) -> bool:
        if capability != "as_mixture":
            return super().supports(capability, params)
        try:
            target = resolve_estimator(params.get("estimator", "sklearn.mixture.GaussianMixture"))
        except ValueError:
            return False
        return _is_mixture(target) or _is_gaussian_kde(target, params.get("params") or {})

    def _new(self) -> Any:
        return resolve_estimator(self.estimator)(**(self.params or {}))

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "SklearnDensity":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"X must have shape (n, d) with n > 0, got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise FitError("training data contains non-finite values")
        est = self._new()
        self.seed_ = -1
        if rng is not None and "random_state" in est.get_params():
            self.seed_ = int(rng.integers(2**31 - 1))
            est.set_params(random_state=self.seed_)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X)
        self.warnings_ = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        self.estimator_, self.fit_X_, self._scorer = est, X, None
        return self

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()
        est = self.estimator_

        def one(g: np.random.Generator) -> np.ndarray:
            state = np.random.RandomState(int(g.integers(2**31 - 1)))
            if "random_state" in inspect.signature(est.sample).parameters:
                out = est.sample(int(n), random_state=state)
            else:  # GaussianMixture.sample reads self.random_state: lend it ours for this call
                saved = est.random_state
                est.random_state = state
                try:
                    out = est.sample(int(n))
                finally:
                    est.random_state = saved
            return np.asarray(out[0] if isinstance(out, tuple) else out, dtype=float)

        return draw(rng, one)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Log density of the distribution ``sample`` draws from.

        For mixtures that is the mixture of the fitted ``weights_``, ``means_`` and ``covariances_``:
        ``BayesianGaussianMixture.score_samples`` is an expectation under the variational posterior,
        which does not integrate to one, so it is not used.
        """
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        if X.ndim == 3:
            return np.stack([self.log_prob(x) for x in X])
        if _is_mixture(type(self.estimator_)):
            if getattr(self, "_scorer", None) is None:
                from .gmm import sklearn_mixture

                self._scorer = sklearn_mixture(*self.as_mixture())
            return self._scorer.score_samples(X)
        return self.estimator_.score_samples(X)

    def as_mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted density as a Gaussian mixture (mixture estimators, Gaussian KDE)."""
        self._check_fitted()
        est = self.estimator_
        if _is_mixture(type(est)):
            from .gmm import full_covariances

            return np.asarray(est.weights_), np.asarray(est.means_), full_covariances(est)
        if _is_gaussian_kde(type(est), est.get_params()):
            n, d = self.fit_X_.shape
            return np.full(n, 1.0 / n), self.fit_X_, np.broadcast_to(np.eye(d) * est.bandwidth_**2, (n, d, d))
        raise NotImplementedError(f"{self.estimator} is not a Gaussian mixture")

    # -- state: the estimator's fitted arrays (tuples flattened), the data and seed of the fit ----
    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays only. Fitted attributes that are not arrays (``KernelDensity``'s tree) are
        rebuilt on loading by refitting on ``fit_X`` with the same seed, which gives them back exactly."""
        self._check_fitted()
        state = {"fit_X": self.fit_X_, "seed": np.array(self.seed_), "refit": np.array(False)}
        for key, value in vars(self.estimator_).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, tuple) and all(isinstance(v, (np.ndarray, float, int)) for v in value):
                state.update({f"attr/{key}/{i}": np.asarray(v) for i, v in enumerate(value)})
            elif isinstance(value, (np.ndarray, float, int, bool, np.number, np.bool_)):
                state[f"attr/{key}"] = np.asarray(value)
            else:
                state["refit"] = np.array(True)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "SklearnDensity":
        est, X = self._new(), np.asarray(state["fit_X"], dtype=float)
        arrays = {k.removeprefix("attr/"): np.asarray(v) for k, v in state.items() if k.startswith("attr/")}
        restored: dict[str, Any] = {}
        for key, value in arrays.items():
            name, _, index = key.partition("/")
            if index:
                restored.setdefault(name, {})[int(index)] = value
            else:
                restored[name] = value.item() if value.ndim == 0 else value
        seed = int(np.asarray(state["seed"]))
        if seed >= 0:
            est.set_params(random_state=seed)
        if bool(np.asarray(state["refit"])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported at the original fit
                est.fit(X)
        for name, value in restored.items():
            setattr(est, name, tuple(value[i] for i in sorted(value)) if isinstance(value, dict) else value)
        self.estimator_, self.fit_X_, self.seed_, self.warnings_, self._scorer = est, X, seed, [], None
        return self


register_model("sklearn", SklearnDensity)
entry_point_group("modelcollapse.estimators", "estimator", lambda name, obj: register_estimator(obj),
                  ESTIMATORS.sources)
