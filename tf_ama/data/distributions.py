"""Valuation distributions as tensorflow-probability distributions.

Every distribution here has event shape `[num_bidders, num_items]`: one sample is one
valuation profile (`valuations[i, j]` is bidder `i`'s value for item `j`). Sampling is
stateless and reproducible: pass `seed` as an int32 tensor of shape `[2]` (or a tuple of
two ints), e.g. `dist.sample(1024, seed=(0, 7))`.

Built-in families (the `distribution` field of a `Setting`):

* `uniform`: independent `U[low, high]`; `low` and `high` are scalars or arrays that
  broadcast to `[num_bidders, num_items]` (per-bidder / per-item bounds).
* `exponential`: independent exponentials with the given `mean` (scalar or broadcastable).
* `spherical`: bidders i.i.d. on `P` discrete points in `num_items` dimensions, after the
  construction of Briest et al. (2010) used in the paper's section 6.2: point `k` is
  `base**k * directions[k]` with probability proportional to `base**-k`.
* `discrete`: bidders independent on finitely many types, given as `points` and
  `probabilities` (per bidder or shared).

Any TFP distribution class of scalars is a family too, by its class name (e.g. `"Beta"`,
`"Gamma"`, `"LogNormal"`, `"TruncatedNormal"`): its parameters, each a scalar or per bidder and
item, are broadcast to `[num_bidders, num_items]` and the values are independent
(`tfp_class`); so a settings file (`tf_ama.data.settings.load_setting`) needs no Python.
`"empirical"` is the training rows of a data file (`tf_ama.data.empirical`).

Users add their own family with `register_distribution(name, factory)`, where
`factory(num_bidders, num_items, dtype=..., **params)` returns any TFP distribution with event
shape `[num_bidders, num_items]` (`dtype` is always passed, as a keyword).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_ama.core.exactness import real_array
from tf_ama.utils import checks

tfd = tfp.distributions

# Directions of the five points of the spherical distribution (docs/design.md §4).
SPHERICAL_DIRECTIONS = (
    (0.78, 0.57, 0.10, 0.23),
    (0.15, 0.60, 0.57, 0.53),
    (0.60, 0.36, 0.64, 0.32),
    (0.70, 0.61, 0.37, 0.05),
    (0.73, 0.06, 0.34, 0.59),
)


def _profile_array(value, name, num_bidders, num_items):
    """Broadcasts a scalar / per-bidder-per-item parameter to `[num_bidders, num_items]`:
    real numbers only (no boolean, string or integer beyond 2**53 coerced)."""
    array = real_array(value, name).astype(np.float64)
    try:
        return np.broadcast_to(array, (num_bidders, num_items)).copy()
    except ValueError:
        raise ValueError(
            f"`{name}` must be a scalar or broadcast to [num_bidders, num_items] = "
            f"[{num_bidders}, {num_items}]; got shape {list(array.shape)}. Give one value, "
            f"one per item (shape [{num_items}]) or one per bidder and item."
        ) from None


def uniform(num_bidders, num_items, low=0.0, high=1.0, dtype=tf.float32):
    """Independent `U[low, high]` values; bounds may differ per bidder and item."""
    low = _profile_array(low, "low", num_bidders, num_items)
    high = _profile_array(high, "high", num_bidders, num_items)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"`low` and `high` must be finite; got low={low.tolist()}, "
                         f"high={high.tolist()}.")
    if np.any(low < 0):
        raise ValueError(f"`low` must be >= 0 (values are non-negative); got {low.tolist()}.")
    # Compared in the sampling dtype, where close bounds may be one number.
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by the check draw
        equal = np.any(low.astype(dtype.as_numpy_dtype) >= high.astype(dtype.as_numpy_dtype))
    if equal:
        raise ValueError(f"`low` must be < `high` everywhere, also in {dtype.name} (the dtype "
                         f"of the values); got low={low.tolist()}, high={high.tolist()}.")
    base = tfd.Uniform(low=tf.constant(low, dtype), high=tf.constant(high, dtype))
    return tfd.Independent(base, reinterpreted_batch_ndims=2, name="UniformValuations")


def exponential(num_bidders, num_items, mean=1.0, dtype=tf.float32):
    """Independent exponential values with the given mean (rate = 1 / mean)."""
    mean = _profile_array(mean, "mean", num_bidders, num_items)
    if not np.all(np.isfinite(mean)) or np.any(mean <= 0):
        raise ValueError(f"`mean` must be finite and > 0; got {mean.tolist()}.")
    base = tfd.Exponential(rate=tf.constant(1.0 / mean, dtype))
    return tfd.Independent(base, reinterpreted_batch_ndims=2, name="ExponentialValuations")


def spherical(num_bidders, num_items, base=2.0, directions=SPHERICAL_DIRECTIONS, dtype=tf.float32):
    """Bidders i.i.d. on `P` points: point `k` = `base**k * directions[k]`, prob ∝ `base**-k`."""
    directions = real_array(directions, "directions").astype(np.float64)
    if directions.ndim != 2 or directions.shape[1] != num_items:
        raise ValueError(
            f"`directions` must have shape [num_points, num_items={num_items}]; "
            f"got {list(directions.shape)}."
        )
    if not np.all(np.isfinite(directions)) or np.any(directions < 0):
        raise ValueError("`directions` must be finite and >= 0.")
    base = checks.number("base", base, above=0)
    num_points = directions.shape[0]
    scale = base ** np.arange(num_points)
    return _points(num_bidders, num_items, directions * scale[:, None],
                   np.exp(-np.arange(num_points) * np.log(base)), dtype, "SphericalValuations")


def discrete(num_bidders, num_items, points, probabilities, dtype=tf.float32):
    """Bidders independent on finitely many types: `points` `[P, num_items]` (the same for
    every bidder) or `[num_bidders, P, num_items]`, each type's values; `probabilities`
    `[P]` or `[num_bidders, P]`, each bidder's summing to 1. A prior on finitely many types
    trains on its exact expectation and has a computable optimum
    (`tf_ama.evaluation.optimum`)."""
    points = real_array(points, "points").astype(np.float64)
    probabilities = real_array(probabilities, "probabilities").astype(np.float64)
    if points.ndim not in (2, 3) or points.shape[-1] != num_items or (
            points.ndim == 3 and points.shape[0] != num_bidders):
        raise ValueError(f"`points` must have shape [P, num_items={num_items}] or "
                         f"[num_bidders={num_bidders}, P, num_items]; got "
                         f"{list(points.shape)}.")
    num_points = points.shape[-2]
    if probabilities.shape not in ((num_points,), (num_bidders, num_points)):
        raise ValueError(f"`probabilities` must have shape [P={num_points}] or [num_bidders="
                         f"{num_bidders}, P], one per point; got {list(probabilities.shape)}.")
    if not np.all(np.isfinite(points)) or np.any(points < 0):
        raise ValueError("`points` must be finite and >= 0 (values).")
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities <= 0):
        raise ValueError("`probabilities` must be finite and > 0 (leave out a point of "
                         "probability 0).")
    if np.any(np.abs(probabilities.sum(axis=-1) - 1.0) > 1e-9):
        raise ValueError(f"`probabilities` must sum to 1 for each bidder (within 1e-9); they "
                         f"sum to {probabilities.sum(axis=-1).tolist()}. Divide them by the "
                         "sum if they are weights.")
    return _points(num_bidders, num_items, points, probabilities, dtype, "DiscreteValuations")


def _points(num_bidders, num_items, points, probabilities, dtype, name):
    """`Independent(MixtureSameFamily(Categorical, Independent(Deterministic)))`: each
    bidder on the rows of `points` with `probabilities` (proportional; `bidder_types`
    reads the shape back)."""
    num_points = points.shape[-2]
    points = np.broadcast_to(points, (num_bidders, num_points, num_items))
    logits = np.broadcast_to(np.log(probabilities), (num_bidders, num_points))
    components = tfd.Independent(
        tfd.Deterministic(loc=tf.constant(points, dtype)), reinterpreted_batch_ndims=1
    )
    mixture = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=tf.constant(logits, dtype)),
        components_distribution=components,
    )
    return tfd.Independent(mixture, reinterpreted_batch_ndims=1, name=name)


def tfp_class(num_bidders, num_items, class_name, dtype=tf.float32, **params):
    """Independent values from `tfd.<class_name>(**params)`, every parameter broadcast to
    `[num_bidders, num_items]`; refused if the class is not a TFP distribution of scalars or
    if a check draw gives a value that is negative or not finite."""
    factory = getattr(tfd, class_name, None)
    if not (isinstance(factory, type) and issubclass(factory, tfd.Distribution)):
        raise ValueError(
            f"`distribution`: {class_name!r} is neither a family of tf_ama "
            f"({', '.join(list_distributions())}) nor a tfp.distributions class (e.g. 'Beta', "
            "'Gamma', 'LogNormal', 'TruncatedNormal').")
    arrays = {key: tf.constant(_profile_array(value, f"distribution_params.{key}", num_bidders,
                                              num_items), dtype)
              for key, value in params.items()}
    try:
        base = factory(**arrays, validate_args=True)
        draw = base.sample(256, seed=(0, 0))
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
        message = str(error).strip().splitlines()[0]
        raise ValueError(f"`distribution_params` of tfd.{class_name}: {message}") from None
    if base.event_shape.rank != 0 or draw.shape[1:] != (num_bidders, num_items):
        raise ValueError(f"`distribution`: tfd.{class_name} with these parameters draws "
                         f"{draw.shape[1:]}, not one scalar per bidder and item.")
    if not base.dtype.is_floating:
        raise ValueError(f"`distribution`: tfd.{class_name} draws {base.dtype.name} values; "
                         "valuations are real numbers (use a continuous distribution).")
    values = draw.numpy()
    if (not _support_is_nonnegative(base, dtype) or not np.all(np.isfinite(values))
            or np.any(values < 0)):
        raise ValueError(
            f"`distribution`: tfd.{class_name}{params} can draw a value that is negative "
            "(its support reaches below 0) or not finite; valuations must be >= 0. Use a distribution on [0, inf) (e.g. Gamma, "
            "LogNormal, TruncatedNormal with low >= 0).")
    return tfd.Independent(base, reinterpreted_batch_ndims=2, name=f"{class_name}Valuations")


def _support_is_nonnegative(distribution, dtype):
    """Whether every value `distribution` can draw is >= 0: its default event-space bijector
    maps the real line onto its support, so the support's lower end is the image of a very
    negative number (True if TFP does not know the support, or for a discrete distribution,
    which has no such bijector: the check draw decides)."""
    try:
        bijector = distribution.experimental_default_event_space_bijector()
        if bijector is None:  # a discrete distribution (e.g. Poisson) has none
            return True
        low = bijector.forward(tf.fill(distribution.batch_shape, tf.constant(-1e30, dtype)))
    except (NotImplementedError, TypeError, ValueError):
        return True
    return bool(np.all(np.nan_to_num(np.asarray(low), nan=-1.0) >= 0))


def _empirical(num_bidders, num_items, dtype=tf.float32, **params):
    from tf_ama.data import data_files

    return data_files.distribution(num_bidders, num_items, dtype, **params)


_FACTORIES: dict[str, Callable] = {
    "uniform": uniform,
    "exponential": exponential,
    "spherical": spherical,
    "discrete": discrete,
    "empirical": _empirical,
}


def register_distribution(name: str, factory: Callable) -> None:
    """Makes `factory(num_bidders, num_items, dtype=..., **params)` available as `distribution=name`.

    `factory` must accept the keyword `dtype` (the dtype of the samples, tf.float32 by
    default) and return a TFP distribution with event shape `[num_bidders, num_items]`.
    """
    checks.string("name", name)
    if not callable(factory):
        raise TypeError(f"`factory` must be callable; got {type(factory).__name__}.")
    _FACTORIES[name] = factory


def list_distributions() -> list[str]:
    return sorted(_FACTORIES)


def make_distribution(name, num_bidders, num_items, params=None, dtype=tf.float32):
    """Builds the TFP distribution `name` (a family, or a `tfp.distributions` class name:
    `tfp_class`) with event shape `[num_bidders, num_items]`."""
    params = dict(params or {})
    if name not in _FACTORIES:
        if not (isinstance(getattr(tfd, str(name), None), type) and name[:1].isupper()):
            raise ValueError(
                f"Unknown distribution {name!r}; known: {list_distributions()}, or the name "
                "of a tfp.distributions class (e.g. 'Beta'). Register your own with "
                "tf_ama.register_distribution(name, factory).")
        return tfp_class(num_bidders, num_items, name, dtype=dtype, **params)
    try:
        dist = _FACTORIES[name](num_bidders, num_items, dtype=dtype, **params)
    except TypeError as error:
        raise ValueError(f"Bad parameters {params} for distribution {name!r}: {error}") from None
    check_event_shape(dist, num_bidders, num_items)
    return dist


def bidder_types(dist):
    """Each bidder's finitely many types and their probabilities, as float64 numpy arrays
    `(values [num_bidders, P, num_items], probabilities [num_bidders, P])`, for bidders
    independent on `P` points each: `Independent(MixtureSameFamily(Categorical,
    Independent(Deterministic)))` with the bidders as the mixture's batch (the shape of
    `spherical`). Parameters shared by the bidders are repeated for each. Other
    distributions are refused (sample from them instead)."""
    mixture = dist.distribution if isinstance(dist, tfd.Independent) else None
    points = (mixture.components_distribution
              if isinstance(mixture, tfd.MixtureSameFamily) else None)
    if not (isinstance(points, tfd.Independent)
            and isinstance(points.distribution, tfd.Deterministic)):
        raise ValueError(
            f"A finite type space needs bidders independent on finitely many points "
            f"(Independent(MixtureSameFamily(Categorical, Independent(Deterministic))), e.g. "
            f"'spherical'); got {dist.name}. Sample from it instead.")
    probabilities = np.asarray(mixture.mixture_distribution.probs_parameter(), np.float64)
    num_bidders, num_items = dist.event_shape.as_list()
    num_points = probabilities.shape[-1]
    probabilities = np.broadcast_to(probabilities, (num_bidders, num_points))
    values = np.broadcast_to(np.asarray(points.distribution.loc, np.float64),
                             (num_bidders, num_points, num_items))
    return values, probabilities


def type_profiles(num_points, num_bidders):
    """`[P**m, m]`: every profile's type index per bidder, in the order of `finite_support`
    (the last bidder's type changing fastest)."""
    return np.indices((num_points,) * num_bidders).reshape(num_bidders, -1).T


def finite_support(dist, max_profiles=1 << 16):
    """Every profile of a discrete distribution and its probability, as float64 numpy arrays
    `(profiles [S, num_bidders, num_items], probabilities [S])`, probabilities summing to 1.

    Knows the distributions of `bidder_types` (e.g. `spherical`): `S` is the product of the
    bidders' point counts, the profiles in the order of `type_profiles`; more than
    `max_profiles` is refused (sample instead).
    """
    values, probabilities = bidder_types(dist)
    num_bidders, num_points = probabilities.shape
    if num_points ** num_bidders > max_profiles:
        raise ValueError(
            f"The support has {num_points}**{num_bidders} = {num_points ** num_bidders:,} "
            f"profiles, more than max_profiles={max_profiles:,}. Sample instead, or raise "
            "max_profiles.")
    choice = type_profiles(num_points, num_bidders)  # [S, m]
    bidders = np.arange(num_bidders)
    profiles = values[bidders, choice]  # [S, m, n]
    joint = np.prod(probabilities[bidders, choice], axis=1)
    return profiles, joint / joint.sum()


def check_event_shape(dist, num_bidders, num_items):
    if not isinstance(dist, tfd.Distribution):
        raise TypeError(
            f"A valuation distribution must be a tfp.distributions.Distribution; got "
            f"{type(dist).__name__}."
        )
    event = tuple(dist.event_shape.as_list()) if dist.event_shape.rank is not None else None
    if event != (num_bidders, num_items) or dist.batch_shape.rank != 0:
        raise ValueError(
            f"A valuation distribution must have event shape [num_bidders, num_items] = "
            f"[{num_bidders}, {num_items}] and no batch shape; got event shape "
            f"{dist.event_shape}, batch shape {dist.batch_shape}. Wrap independent values "
            "in tfd.Independent(..., reinterpreted_batch_ndims=2)."
        )


def as_seed(seed) -> tf.Tensor:
    """A stateless seed: an int32 tensor of shape [2] from an int, a pair or a tensor."""
    if not isinstance(seed, (tf.Tensor, tf.Variable)):
        # tf.constant silently wraps ints outside int32 (2**32 would equal 0): refuse them.
        ints = [seed] if isinstance(seed, (int, np.integer)) else (
            list(seed) if isinstance(seed, (tuple, list)) else [])
        if any(isinstance(value, (int, np.integer)) and not -(2**31) <= int(value) < 2**31
               for value in ints):
            raise ValueError(
                f"`seed` must fit in int32 ([-2**31, 2**31)); got {seed}. For more seeds "
                "give a pair of int32 values, e.g. seed=(1, 2)."
            )
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape.as_list() != [2]:
        raise ValueError(f"`seed` must be an int or a pair of ints; got {seed!r}.")
    return tf.cast(seed, tf.int32)
