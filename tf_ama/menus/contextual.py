"""The contextual menu: a network from public bidder and item features to an AMA's menu.

`ContextualMenu` maps `bidder_context [B, m, d_x]` and `item_context [B, n, d_y]` to one menu
per auction (docs/design.md §10):

    allocations [B, K', m, n]   entry 0 empty, K - 1 lotteries (softmax over bidders + nobody),
                                then with `bundles` one grand bundle per bidder (K' = K + m)
    boosts      [B, K']         entry 0's is 0
    weights     [B, m]          positive, in the exactness contract's range
    c           [B, m + 1, n]   the item-separable family's boosts (if `separable`)

for ANY m and n. It never sees a bid, so the AMA it defines is strategyproof and IR for every
context. The network works on a grid of (bidder or nobody) x item tokens: each token embeds
its bidder's and its item's context (nobody's is learned), and each `AxialBlock` lets every
token attend to its row (the bidder's items) and its column (the item's bidders and nobody),
Keras `MultiHeadAttention` as in the encoders of keras-hub, plus the grid's mean. Nothing
depends on the order of bidders or items: permuting them permutes the menu (tested). With
`size_features`, each token's input also holds `log m` and/or `log n`: attention and the mean
average over the tokens, so without them the network hardly tells a 2x2 auction from a 3x10
one, and a network trained on both serves each a compromise (docs/design.md §10).

With `separable`, `c` starts at `myerson` (Myerson's optimal auction of each item alone for
the context, `ContextualSetting.separate_myerson_boosts`; zero, i.e. VCG, without one) plus
a learned correction whose last layer starts at 0, so that the untrained family IS the
optimal separate auction of every context.

With `bundles`, bidder i's grand bundle (every item to i) is an entry whose boost is the
family's boost extended to it, `sum_j c[i, j]`, times `1 - d`, plus a learned correction from
bidder i's tokens whose last layer starts at 0. `d`, the `bundle_discount`, is one learned
scalar that starts at `bundle_discount` (default `tf_ama.utils.defaults.BUNDLE_DISCOUNT`,
0.3): the bundle is spared that share of the reserve the family charges for its items
(`c[i, j] = -s_ij / 2 <= 0` at Myerson's), so it wins the auctions where a bidder's whole
bundle is worth more than its items sold one by one. Without it (`bundle_discount=0`, no
variable) a bundle scores at most as the family does (equal when the family gives i every
item) and the untrained menu's outcome is the family's, per-context Myerson; but then no
bundle wins an auction, the relaxation's weight of each is `exp(-lambda * gap)` and
training never finds them (docs/design.md §10:
`d = 0.3` alone, untrained, is 0.07 above Myerson at A 3x10 and 0.02 at B 5x2, where runs
from `d = 0` stayed at Myerson).

The float64 menu (`dtype=tf.float64`, for the exact outcome) is built from the network's
float32 outputs cast to float64, the softmax taken in float64: its allocations are feasible
in float64, as for the learned menus (`tf_ama.menus.layers`).
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tf_ama.core.exactness import MAX_BIDDER_WEIGHT, MIN_BIDDER_WEIGHT
from tf_ama.data.contexts import size_dimensions
from tf_ama.utils import checks, defaults, seeds


@functools.lru_cache(maxsize=None)
def _log_weight_range():
    """The range of the log bidder weights, computed on first use rather than at import: an
    op at import would start TensorFlow's runtime, after which no MultiWorkerMirroredStrategy
    can be made (`tf-ama train` under TF_CONFIG: tf_ama.utils.distributed)."""
    with tf.init_scope():  # eager, also when first used inside a traced call
        return (float(tf.math.log(MIN_BIDDER_WEIGHT)), float(tf.math.log(MAX_BIDDER_WEIGHT)))


def _glorot(seed, offset):
    """A seeded initializer: every variable of the network has its own seed, so that a
    model's `seed` alone fixes its initial parameters."""
    return keras.initializers.GlorotUniform(seed=seeds.network_layer_seed(seed, offset))


def _linear_family_boosts(allocations, separable_boosts):
    """The family's boost extended linearly to each lottery: `sum_ij a[k, i, j] c[i, j] +
    sum_j (1 - sum_i a[k, i, j]) c[nobody, j]` `[B, K]`, 0 for the empty entry 0 (whose boost
    stays 0). A deterministic lottery then scores exactly as the family's entry of the same
    allocation, and every lottery competes with the family on the same (virtual) terms."""
    lotteries = allocations[:, 1:]
    bidders = tf.einsum("bkij,bij->bk", lotteries, separable_boosts[:, :-1])
    nobody = tf.einsum("bkj,bj->bk", 1.0 - tf.reduce_sum(lotteries, axis=2),
                       separable_boosts[:, -1])
    return tf.pad(bidders + nobody, [[0, 0], [1, 0]])


@keras.saving.register_keras_serializable(package="tf_ama")
class EncoderBlock(keras.layers.Layer):
    """Self-attention over the second-to-last axis, then a feed-forward layer, each with a
    residual and layer normalization (post-norm, as keras-hub's TransformerEncoder)."""

    def __init__(self, hidden, heads, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.heads, self.seed = hidden, heads, seed
        self.attention = keras.layers.MultiHeadAttention(
            heads, max(1, hidden // heads), kernel_initializer=_glorot(seed, 0))
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5)
        self.dense_in = keras.layers.Dense(hidden, activation="relu",
                                           kernel_initializer=_glorot(seed, 1))
        self.dense_out = keras.layers.Dense(hidden, kernel_initializer=_glorot(seed, 2))
        self.dense_norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def call(self, tokens):
        tokens = self.attention_norm(tokens + self.attention(tokens, tokens))
        return self.dense_norm(tokens + self.dense_out(self.dense_in(tokens)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "heads": self.heads,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="tf_ama")
class AxialBlock(keras.layers.Layer):
    """One step of the grid network on tokens `[B, m + 1, n, hidden]`: attention along the
    row (items) and along the column (bidders and nobody), joined with the grid's mean by a
    two-layer perceptron."""

    def __init__(self, hidden, heads, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.heads, self.seed = hidden, heads, seed
        self.along_items = EncoderBlock(hidden, heads, seeds.encoder_seed(seed, 1), name="along_items")
        self.along_bidders = EncoderBlock(hidden, heads, seeds.encoder_seed(seed, 2), name="along_bidders")
        self.join = keras.Sequential([
            keras.layers.Dense(hidden, activation="relu", kernel_initializer=_glorot(seed, 3)),
            keras.layers.Dense(hidden, kernel_initializer=_glorot(seed, 4))], name="join")

    def call(self, tokens):
        shape = tf.shape(tokens)
        batch, rows, items = shape[0], shape[1], shape[2]
        by_row = tf.reshape(tokens, [batch * rows, items, self.hidden])
        by_row = tf.reshape(self.along_items(by_row), [batch, rows, items, self.hidden])
        by_column = tf.reshape(tf.transpose(tokens, [0, 2, 1, 3]), [batch * items, rows, self.hidden])
        by_column = tf.transpose(tf.reshape(self.along_bidders(by_column),
                                            [batch, items, rows, self.hidden]), [0, 2, 1, 3])
        mean = tf.broadcast_to(tf.reduce_mean(tokens, axis=[1, 2], keepdims=True), shape)
        return self.join(tf.concat([by_row, by_column, mean], axis=-1))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "heads": self.heads,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="tf_ama")
class ContextualMenu(keras.layers.Layer):
    """A menu computed from contexts, for any number of bidders and items.

    Args:
      bidder_features, item_features: `d_x`, `d_y`.
      menu_size: `K`, the explicit entries, the empty one included (1: the family alone).
      separable: the item-separable family joins the menu, `c` from the tokens.
      learn_bidder_weights: bidder weights from the tokens (else all 1).
      hidden, heads, blocks: the grid network's width, attention heads and `AxialBlock`s.
      linear_family_boosts: add to each lottery's boost the family's boost extended
        linearly to it (`_linear_family_boosts`), so that lotteries compete with the family
        on its terms from the start (docs/design.md §10); needs `separable`. Default (None):
        on with the family.
      bundles: one more entry per bidder, the grand bundle to that bidder (module doc);
        needs `separable`. Default (None): on with the family.
      bundle_discount: the learned share of the family's boost that the grand bundles are
        spared, its start in [0, 1] (module doc); 0: none, neither started nor learned (the
        menu then starts at per-context Myerson, as menus saved before it existed do).
        Default (None): `tf_ama.utils.defaults.BUNDLE_DISCOUNT` with bundles, else 0.
      size_features: the dimensions of the auction's size that every token also sees, a
        subset of `tf_ama.data.contexts.SIZE_DIMENSIONS` ("bidders": `log m`, "items":
        `log n`), so that a menu trained on several sizes can differ between them beyond
        what attention over the tokens tells (docs/design.md §10); () for none.
      seed: seeds the initial parameters.
    """

    kind = "contextual"

    def __init__(self, bidder_features, item_features, menu_size=64, separable=True,
                 learn_bidder_weights=True, hidden=32, heads=2, blocks=2,
                 linear_family_boosts=None, bundles=None, bundle_discount=None,
                 size_features=(), seed=0, **kwargs):
        kwargs.setdefault("name", "contextual_menu")
        super().__init__(**kwargs)
        self.bidder_features = checks.integer("bidder_features", bidder_features, minimum=1)
        self.item_features = checks.integer("item_features", item_features, minimum=1)
        self.menu_size = checks.integer("menu_size", menu_size, minimum=1)
        self.separable = checks.boolean("separable", separable)
        if self.menu_size == 1 and not self.separable:
            raise ValueError("A contextual menu of menu_size=1 without the separable family is "
                             "the empty menu; give menu_size >= 2 or separable=True.")
        self.learn_bidder_weights = checks.boolean("learn_bidder_weights", learn_bidder_weights)
        self.hidden = checks.integer("hidden", hidden, minimum=1)
        self.heads = checks.integer("heads", heads, minimum=1)
        self.blocks = checks.integer("blocks", blocks, minimum=1)
        self.linear_family_boosts = checks.boolean(
            "linear_family_boosts", self.separable if linear_family_boosts is None
            else linear_family_boosts)
        if self.linear_family_boosts and not self.separable:
            raise ValueError("`linear_family_boosts` extends the family's boosts to the "
                             "lotteries: it needs separable=True.")
        self.bundles = checks.boolean("bundles", self.separable if bundles is None else bundles)
        if self.bundles and not self.separable:
            raise ValueError("`bundles` start at the family's boost extended to them: they need "
                             "separable=True.")
        if bundle_discount is None:  # the default with bundles; none without
            bundle_discount = defaults.BUNDLE_DISCOUNT if self.bundles else 0.0
        self.bundle_discount = checks.number("bundle_discount", bundle_discount, minimum=0,
                                             maximum=1)
        if self.bundle_discount and not self.bundles:
            raise ValueError("`bundle_discount` is the grand bundles' discount: it needs "
                             "bundles=True (or leave it at None).")
        self.size_features = size_dimensions("size_features", size_features)
        self.seed = checks.seed("seed", seed)
        seed = seeds.network_seed(self.seed)

        def init(offset):
            return _glorot(seed, offset)

        self.embed = keras.Sequential([
            keras.layers.Dense(self.hidden, activation="relu", kernel_initializer=init(1)),
            keras.layers.Dense(self.hidden, kernel_initializer=init(2))], name="embed")
        self.nobody = self.add_weight(shape=(self.bidder_features,), name="nobody_context",
                                      initializer=keras.initializers.RandomUniform(-1, 1, seed=self.seed))
        self.grid = [AxialBlock(self.hidden, self.heads, seeds.grid_block_seed(seed, b),
                                name=f"block_{b}")
                     for b in range(self.blocks)]
        learned = self.menu_size - 1
        self.allocation_head = keras.layers.Dense(learned, name="allocation_logits",
                                                  kernel_initializer=init(3)) if learned else None
        # The boosts' last layer starts at 0: with the family's boost extended to them, the
        # untrained lotteries score at most as the family does (module doc).
        self.boost_head = keras.Sequential([
            keras.layers.Dense(learned, activation="relu", kernel_initializer=init(4)),
            keras.layers.Dense(learned, kernel_initializer="zeros")],
            name="boosts") if learned else None
        # The Myerson start stays float64: Keras would cast every input to float32.
        self._convert_input_args = False
        self.weight_head = keras.layers.Dense(1, kernel_initializer="zeros", name="log_weights"
                                              ) if self.learn_bidder_weights else None
        self.family_head = keras.layers.Dense(1, kernel_initializer="zeros",
                                              name="separable_boosts") if self.separable else None
        self.bundle_head = keras.layers.Dense(1, kernel_initializer="zeros",
                                              name="bundle_boosts") if self.bundles else None
        self.discount = self.add_weight(
            shape=(), name="bundle_discount",
            initializer=keras.initializers.Constant(self.bundle_discount)
        ) if self.bundles and self.bundle_discount else None

    def entries(self, num_bidders):
        """`K'`, the explicit entries of a menu for `num_bidders`: `menu_size`, plus one
        grand bundle per bidder with `bundles`."""
        return self.menu_size + (num_bidders if self.bundles else 0)

    def build(self, input_shape=None):
        """Creates every variable, from a menu for one auction of one bidder and one item
        (the network works for any size)."""
        del input_shape
        self.call(tf.zeros([1, 1, self.bidder_features]), tf.zeros([1, 1, self.item_features]))
        self.built = True

    def tokens(self, bidder_context, item_context):
        """The grid's last tokens `[B, m + 1, n, hidden]` (float32; rows: bidders, nobody)."""
        bidder_context = tf.cast(bidder_context, tf.float32)
        item_context = tf.cast(item_context, tf.float32)
        batch = tf.shape(bidder_context)[0]
        nobody = tf.broadcast_to(tf.cast(self.nobody, tf.float32), [batch, 1, self.bidder_features])
        rows = tf.concat([bidder_context, nobody], axis=1)  # [B, m + 1, d_x]
        num_rows, num_items = tf.shape(rows)[1], tf.shape(item_context)[1]
        pairs = tf.concat([
            tf.broadcast_to(rows[:, :, None, :], [batch, num_rows, num_items, self.bidder_features]),
            tf.broadcast_to(item_context[:, None, :, :],
                            [batch, num_rows, num_items, self.item_features])], axis=-1)
        if self.size_features:
            counts = {"bidders": num_rows - 1, "items": num_items}
            size = tf.math.log(tf.cast(tf.stack([counts[d] for d in self.size_features]),
                                       tf.float32))
            pairs = tf.concat([pairs, tf.broadcast_to(
                size, [batch, num_rows, num_items, len(self.size_features)])], axis=-1)
        tokens = self.embed(pairs)
        for block in self.grid:
            tokens = tokens + block(tokens)
        return tokens

    def call(self, bidder_context, item_context, myerson=None, dtype=tf.float32):
        """`(allocations, boosts, bidder_weights, separable_boosts or None)` in `dtype`, one
        menu per auction; `myerson`: the family's starting `c` `[B, m + 1, n]` (None: 0)."""
        tokens = self.tokens(bidder_context, item_context)
        batch = tf.shape(tokens)[0]
        num_bidders = tf.shape(tokens)[1] - 1
        num_items = tf.shape(tokens)[2]
        empty_allocation = tf.zeros([batch, 1, num_bidders, num_items], dtype)
        empty_boost = tf.zeros([batch, 1], dtype)
        if self.allocation_head is not None:
            logits = tf.cast(self.allocation_head(tokens), dtype)  # [B, m + 1, n, K - 1]
            lotteries = tf.nn.softmax(logits, axis=1)[:, :-1]  # over bidders and nobody
            allocations = tf.concat([empty_allocation,
                                     tf.transpose(lotteries, [0, 3, 1, 2])], axis=1)
            boosts = tf.cast(self.boost_head(tf.reduce_mean(tokens, axis=[1, 2])), dtype)
            boosts = tf.concat([empty_boost, boosts], axis=1)
        else:
            allocations, boosts = empty_allocation, empty_boost
        if self.learn_bidder_weights:
            log_weights = tf.reduce_mean(self.weight_head(tokens[:, :-1])[..., 0], axis=2)
            weights = tf.exp(tf.clip_by_value(tf.cast(log_weights, dtype), *_log_weight_range()))
            weights = tf.clip_by_value(weights, MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT)
        else:
            weights = tf.ones([batch, num_bidders], dtype)
        separable_boosts = None
        if self.separable:
            separable_boosts = tf.cast(self.family_head(tokens)[..., 0], dtype)
            if myerson is not None:
                separable_boosts += tf.cast(myerson, dtype)
            if self.linear_family_boosts and self.allocation_head is not None:
                boosts += _linear_family_boosts(allocations, separable_boosts)
        if self.bundles:
            grand = tf.broadcast_to(tf.eye(num_bidders, dtype=dtype)[None, :, :, None],
                                    [batch, num_bidders, num_bidders, num_items])
            correction = tf.reduce_mean(self.bundle_head(tokens[:, :-1])[..., 0], axis=2)
            extended = tf.reduce_sum(separable_boosts[:, :-1], axis=2)
            if self.discount is not None:
                extended *= 1.0 - tf.cast(self.discount, dtype)
            allocations = tf.concat([allocations, grand], axis=1)
            boosts = tf.concat([boosts, extended + tf.cast(correction, dtype)], axis=1)
        return allocations, boosts, weights, separable_boosts

    @classmethod
    def from_config(cls, config):
        """A saved menu. One saved before an option existed behaves as it did: without
        bundles, the extended family boosts or the bundles' discount (not today's
        defaults)."""
        return cls(**{"bundles": False, "linear_family_boosts": False, "bundle_discount": 0.0,
                      "size_features": (), **config})

    def get_config(self):
        return {**super().get_config(), "bidder_features": self.bidder_features,
                "item_features": self.item_features, "menu_size": self.menu_size,
                "separable": self.separable, "learn_bidder_weights": self.learn_bidder_weights,
                "hidden": self.hidden, "heads": self.heads, "blocks": self.blocks,
                "linear_family_boosts": self.linear_family_boosts, "bundles": self.bundles,
                "bundle_discount": self.bundle_discount,
                "size_features": list(self.size_features),
                "seed": self.seed}
