"""Metrics: pure functions with metadata, grouped by data type."""

from . import continuous, discrete, images, text  # noqa: F401  (registration side effects)
from .registry import Metric, MetricContext, all_metric_names, available, register, resolve

__all__ = ["Metric", "MetricContext", "all_metric_names", "available", "register", "resolve"]

#: What a run computes when the spec gives no ``metrics`` list (filtered by availability).
DEFAULTS: dict[str, list[str]] = {
    "gaussian": ["mean_error", "variance_ratio", "w2", "kl", "tail_mass"],
    "gmm": ["l2_distance", "nll", "tail_mass", "variance_ratio", "component_weights"],
    "kde": ["nll", "tail_mass", "w1", "w2", "variance_ratio"],
    "categorical": ["tv", "kl", "entropy", "support_size", "tail_mass", "gini_simpson"],
    "vae": ["latent_std", "nll", "class_kl", "class_histogram", "minority_share", "pixel_diversity",
            "frechet_distance"],
    "ngram": ["perplexity", "sample_perplexity", "vocab_size", "rare_token_mass", "distinct_1", "distinct_2",
              "repetition_rate", "self_bleu"],
    "transformer": ["perplexity", "sample_perplexity", "vocab_size", "rare_token_mass", "distinct_1", "distinct_2",
                    "repetition_rate", "self_bleu"],
}


def defaults(model_kind: str, data_kind: str) -> list[str]:
    ok = set(available(model_kind, data_kind))
    return [m for m in DEFAULTS.get(model_kind, []) if m in ok]


__all__ += ["DEFAULTS", "defaults"]
