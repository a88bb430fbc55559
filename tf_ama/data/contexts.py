"""Contextual settings: every auction has its own bidders and items, described by public
features, and the values depend on them (docs/design.md §10).

A sample of a `ContextualSetting` of size `m x n` is a triple

    bids [N, m, n],   bidder_context [N, m, d_x],   item_context [N, n, d_y]

where the contexts are drawn i.i.d. per bidder and per item (uniform on
`[context_low, context_high]^d`) and the values from a *value model*: a function of the
contexts to a TFP distribution with batch shape `[N]` and event shape `[m, n]`.

    setting = tf_ama.get_contextual_setting("contextual_a")
    bids, bidder_context, item_context = setting.sample(1024, seed=0, size=(2, 5))

Built-in value models (after AMenuNet's public generator, Duan et al. 2023):

* `"sigmoid_uniform"` (setting A): `v_ij ~ U[0, sigmoid(<x_i, y_j>)]`, independent.
* `"sigmoid_split"` (setting B, two items): `v_i = (u_i, 1 - u_i) * sigmoid(<x_i, y_j>)` with
  `u_i ~ U[0, 1]`, i.e. `(u_i, 1 - u_i)` is a flat Dirichlet.

A new value model needs no change to the library:

    def beta_values(bidder_context, item_context, dtype, concentration=2.0):
        scale = tf.sigmoid(tf.einsum("bid,bjd->bij", bidder_context, item_context))
        return tfd.Independent(tfd.Beta(concentration, concentration * scale), 2)
    tf_ama.register_value_model("beta", beta_values)
    setting = tf_ama.ContextualSetting("beta_3x4", sizes=[(3, 4)], values="beta")

A value model may also give `uniform_bounds`: if every value `v_ij` is marginally
`U[0, s_ij]` given the contexts, `s` `[N, m, n]`. Then Myerson's optimal auction of each item
alone is known per context, and it is an AMA of the item-separable family
(`separate_myerson_boosts`): the baseline a contextual model must beat, and where its
family starts.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Optional

from tf_ama.data.settings import AuctionSetting
from tf_ama.utils import checks

# TensorFlow is imported only when auctions are drawn, so that listing the settings and
# parsing `--sizes` (the command line) start without it, as in tf_ama.data.settings.


@dataclasses.dataclass(frozen=True)
class ValueModel:
    """A registered value model: `distribution(bidder_context, item_context, dtype,
    **params)` and, optionally, `uniform_bounds(bidder_context, item_context, **params)`."""

    distribution: Callable
    uniform_bounds: Optional[Callable] = None


VALUE_MODELS: dict[str, ValueModel] = {}


def register_value_model(name, distribution, uniform_bounds=None):
    """Registers value model `name` (see the module docstring): `distribution(bidder_context
    [N, m, d_x], item_context [N, n, d_y], dtype, **params)` returns a TFP distribution with
    batch shape `[N]` and event shape `[m, n]`; `uniform_bounds(bidder_context,
    item_context, **params)`, if given, the `s` `[N, m, n]` with `v_ij ~ U[0, s_ij]`
    marginally."""
    checks.string("name", name)
    if not callable(distribution) or (uniform_bounds is not None and not callable(uniform_bounds)):
        raise ValueError("`distribution` (and `uniform_bounds`, if given) must be callables of "
                         "(bidder_context, item_context, ...).")
    VALUE_MODELS[name] = ValueModel(distribution, uniform_bounds)


def affinity(bidder_context, item_context):
    """`sigmoid(<x_i, y_j>)` `[N, m, n]`: how much bidder i can value item j (settings A, B)."""
    import tensorflow as tf

    return tf.sigmoid(tf.einsum("bid,bjd->bij", bidder_context, item_context))


def _sigmoid_uniform(bidder_context, item_context, dtype):
    import tensorflow as tf
    import tensorflow_probability as tfp

    high = tf.cast(affinity(bidder_context, item_context), dtype)
    return tfp.distributions.Independent(
        tfp.distributions.Uniform(tf.zeros_like(high), high), reinterpreted_batch_ndims=2,
        name="SigmoidUniformValues")


def _sigmoid_split(bidder_context, item_context, dtype):
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    scale = tf.cast(affinity(bidder_context, item_context), dtype)
    if scale.shape[-1] != 2:
        raise ValueError(f"Value model 'sigmoid_split' (setting B) is for two items; got "
                         f"{scale.shape[-1]}. Use sizes (m, 2).")
    shares = tfd.Independent(tfd.Dirichlet(tf.ones_like(scale)), reinterpreted_batch_ndims=1)
    return tfd.TransformedDistribution(shares, tfp.bijectors.Scale(scale),
                                       name="SigmoidSplitValues")


def _affinity_bounds(bidder_context, item_context):
    return affinity(bidder_context, item_context)


register_value_model("sigmoid_uniform", _sigmoid_uniform, _affinity_bounds)
register_value_model("sigmoid_split", _sigmoid_split, _affinity_bounds)


def parse_size(size):
    """`(m, n)` from `"3x10"`, `(3, 10)` or `[3, 10]`, both >= 1."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"A size is 'BIDDERSxITEMS', e.g. '3x10'; got {size!r}.")
        size = tuple(int(p) for p in parts)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"A size is (num_bidders, num_items), e.g. (3, 10); got {size!r}.")
    return (checks.integer("num_bidders", size[0], minimum=1),
            checks.integer("num_items", size[1], minimum=1))


def size_name(size):
    return f"{size[0]}x{size[1]}"


# The dimensions of an auction's size a menu's network may see (`size_features`), in order.
SIZE_DIMENSIONS = ("bidders", "items")


def size_dimensions(name, dimensions):
    """`dimensions` (a list of `SIZE_DIMENSIONS` names, or one of them) as a tuple in their
    order; refused, naming `name`, if it holds anything else or a repeat."""
    if isinstance(dimensions, str):
        dimensions = (dimensions,)
    if not isinstance(dimensions, (list, tuple)) or len(set(dimensions)) != len(dimensions) or any(
            d not in SIZE_DIMENSIONS for d in dimensions):
        raise ValueError(f"`{name}` must be a list of distinct dimensions of {SIZE_DIMENSIONS} "
                         f"(e.g. ['bidders', 'items'], or [] for none); got {dimensions!r}.")
    return tuple(d for d in SIZE_DIMENSIONS if d in dimensions)


def varying_dimensions(sizes):
    """The `SIZE_DIMENSIONS` in which `sizes` (pairs `(m, n)`) differ."""
    return tuple(d for d, values in zip(SIZE_DIMENSIONS, zip(*sizes)) if len(set(values)) > 1)


@dataclasses.dataclass(frozen=True)
class ContextualSetting(AuctionSetting):
    """A contextual auction setting (additive bidders).

    Attributes:
      name: identifier, e.g. `contextual_a`.
      sizes: the market sizes `(num_bidders, num_items)` it has (e.g. trained on by default).
      bidder_features, item_features: `d_x`, `d_y`, the context dimensions.
      values: a registered value model (`VALUE_MODELS`).
      values_params: keyword arguments of the value model (JSON-serializable).
      context_low, context_high: contexts are i.i.d. uniform on `[low, high]^d`.
    """

    name: str
    sizes: tuple
    bidder_features: int = 10
    item_features: int = 10
    values: str = "sigmoid_uniform"
    values_params: dict = dataclasses.field(default_factory=dict, hash=False)
    context_low: float = -1.0
    context_high: float = 1.0

    contextual = True  # (a class attribute, not a field)
    _KIND = "contextual setting"

    def __post_init__(self):
        checks.string("name", self.name)
        sizes = tuple(parse_size(s) for s in (self.sizes if not isinstance(self.sizes, str)
                                              else self.sizes.split(",")))
        if not sizes:
            raise ValueError("`sizes` must name at least one size, e.g. [(2, 5)].")
        object.__setattr__(self, "sizes", sizes)
        for field in ("bidder_features", "item_features"):
            object.__setattr__(self, field, checks.integer(field, getattr(self, field), minimum=1))
        checks.choice("values", self.values, VALUE_MODELS)
        try:
            json.dumps(self.values_params)
        except TypeError as error:
            raise ValueError(f"`values_params` must be JSON-serializable: {error}") from None
        low = checks.number("context_low", self.context_low)
        high = checks.number("context_high", self.context_high)
        if not low < high:
            raise ValueError(f"`context_low` must be < `context_high`; got {low}, {high}.")
        object.__setattr__(self, "context_low", low)
        object.__setattr__(self, "context_high", high)

    @property
    def demand(self):
        return "additive"

    def sample(self, num_samples, seed, size, dtype="float32"):
        """`(bids [N, m, n], bidder_context [N, m, d_x], item_context [N, n, d_y])` for
        `num_samples` auctions of `size` (stateless: the same `seed` gives the same triple)."""
        import tensorflow as tf
        import tensorflow_probability as tfp

        from tf_ama.data import distributions

        dtype = tf.as_dtype(dtype)

        num_bidders, num_items = parse_size(size)
        context_seed, item_seed, value_seed = tfp.random.split_seed(
            distributions.as_seed(seed), 3)
        bidder_context = self._contexts([num_samples, num_bidders, self.bidder_features],
                                        context_seed, dtype)
        item_context = self._contexts([num_samples, num_items, self.item_features], item_seed,
                                      dtype)
        bids = self.value_distribution(bidder_context, item_context, dtype).sample(seed=value_seed)
        return bids, bidder_context, item_context

    def _contexts(self, shape, seed, dtype):
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, self.context_low, self.context_high,
                                           dtype=dtype)

    def value_distribution(self, bidder_context, item_context, dtype="float32"):
        """The value model's TFP distribution given the contexts (event shape `[m, n]`)."""
        import tensorflow as tf

        distribution = VALUE_MODELS[self.values].distribution(
            bidder_context, item_context, tf.as_dtype(dtype), **self.values_params)
        expected = [bidder_context.shape[1], item_context.shape[1]]
        if distribution.event_shape.as_list() != expected:
            raise ValueError(f"Value model {self.values!r} gave event shape "
                             f"{distribution.event_shape}; a profile is [m, n] = {expected}.")
        return distribution

    @property
    def has_uniform_bounds(self):
        return VALUE_MODELS[self.values].uniform_bounds is not None

    def separate_myerson_boosts(self, bidder_context, item_context):
        """Myerson's optimal auction of each item alone, per context, as the item-separable
        family's boosts `c` `[N, m + 1, n]` (weights 1), or None if the value model has no
        `uniform_bounds`.

        For independent `v_ij ~ U[0, s_ij]`, item j's virtual values are `2 v_ij - s_ij`,
        and Myerson gives the item to the highest non-negative one: the AMA that maximizes
        `sum_j (v_{o_j j} - s_{o_j j} / 2)`, i.e. `c[i, j] = -s_ij / 2`, `c[nobody, j] = 0`
        (docs/design.md §10). Its AMA payments are Myerson's."""
        bounds = VALUE_MODELS[self.values].uniform_bounds
        if bounds is None:
            return None
        import tensorflow as tf

        s = bounds(bidder_context, item_context, **self.values_params)
        return tf.concat([-0.5 * s, tf.zeros_like(s[:, :1])], axis=1)

    def to_dict(self) -> dict[str, Any]:
        config = super().to_dict()
        config["sizes"] = [list(s) for s in self.sizes]
        return config


_CONTEXTUAL_SETTINGS = {
    "contextual_a": ContextualSetting(
        "contextual_a", sizes=[(2, 2), (2, 5), (2, 10), (3, 2), (3, 5), (3, 10)]),
    "contextual_b": ContextualSetting(
        "contextual_b", sizes=[(m, 2) for m in range(2, 11)], values="sigmoid_split"),
}


def list_contextual_settings():
    return list(_CONTEXTUAL_SETTINGS)


def get_contextual_setting(name):
    """The built-in contextual setting `name`, or `name` itself if it is one (or its dict)."""
    if isinstance(name, ContextualSetting):
        return name
    if isinstance(name, dict):
        return ContextualSetting.from_dict(name)
    if name not in _CONTEXTUAL_SETTINGS:
        raise ValueError(f"Unknown contextual setting {name!r}. Known: "
                         f"{', '.join(_CONTEXTUAL_SETTINGS)}; define your own with "
                         "tf_ama.ContextualSetting(...).")
    return _CONTEXTUAL_SETTINGS[name]


def is_contextual(setting):
    """Whether `setting` names (or is) a contextual setting."""
    return (getattr(setting, "contextual", False)
            or (isinstance(setting, dict) and "sizes" in setting)
            or setting in list_contextual_settings())
