"""Whether a run directory may be resumed with these arguments: its recorded config must be
the one these arguments make, read in the form of this version (`check_same_run`)."""

from __future__ import annotations

from tf_ama.models.auction import AffineMaximizerAuction
from tf_ama.models.contextual import ContextualAuction
from tf_ama.training.config import TrainingConfig


def check_same_run(out, previous, config, source):
    """Refuses to resume a run whose recorded config (`previous`, read from `source`) is not
    `config`, the arguments added since it was recorded counting as their defaults (and its
    recipe record not compared)."""
    previous = {k: v for k, v in previous.items() if k != "recipe"}
    config = {k: v for k, v in config.items() if k != "recipe"}
    previous = _with_new_defaults(previous, config)
    if previous != config:
        differences = _differences(previous, config)
        raise ValueError(
            f"--out {out!r} already holds a run with a different configuration ({source}; "
            f"it differs in {', '.join(differences)}); resume it with the "
            f"same arguments (and data) or choose another --out directory.{_hint(previous, differences)}\n"
            f"  existing: {previous}\n  requested: {config}"
        )


def _hint(previous, differences):
    """When only training fields differ: the recorded values, as flags (a default, such as
    a recipe's budget, may have changed since the run started: docs/changes.md)."""
    if not differences or not all(path.startswith("training.") for path in differences):
        return ""
    recorded = {path.split(".", 1)[1]: previous["training"].get(path.split(".", 1)[1])
                for path in differences}
    return (" Only training fields differ; if the run was started with defaults that have "
            "changed since (docs/changes.md), give the recorded ones: " + " ".join(
                f"--{_FLAGS.get(field, field.replace('_', '-'))} {value}"
                for field, value in recorded.items()) + ".")


_FLAGS = {"evaluation_samples": "samples"}  # `tf-ama train` flags not named as their field


_ABSENT = object()  # a field one config has and the other lacks


def _differences(previous, config, path=""):
    """The dotted paths of the fields in which two configs differ (e.g.
    `setting.distribution_params.sha256`: the data file changed)."""
    if isinstance(previous, dict) and isinstance(config, dict):
        return [found for key in sorted(set(previous) | set(config), key=str)
                for found in _differences(previous.get(key, _ABSENT), config.get(key, _ABSENT),
                                          f"{path}.{key}" if path else str(key))]
    return [path or "the whole configuration"] if previous != config else []


def _with_new_defaults(previous, config):
    """`previous` (a run's config.json) in the form of this version, so that a run started
    by an older one still resumes: the model's arguments as the model built from them
    records them (0.1's flat menu options become the menu layer's config; arguments added
    since count as their defaults), the training fields added since as their defaults."""
    previous = dict(previous)
    if isinstance(previous.get("model"), dict) and isinstance(previous.get("setting"), dict):
        model_class = ContextualAuction if previous.get("contextual") else AffineMaximizerAuction
        try:
            previous["model"] = model_class(previous["setting"], **previous["model"]).own_config()
        except (TypeError, ValueError):
            pass  # not a model this version builds: it differs from `config`
    if isinstance(previous.get("training"), dict):
        missing = set(config["training"]) - set(previous["training"])
        defaults = TrainingConfig().to_dict()
        previous["training"] = {**{key: defaults[key] for key in missing},
                                **previous["training"]}
    return previous
