"""Export of a `ContextualAuction` for TF Serving (`tf_ama.export_saved_model` calls this).

Same layout, atomic write and versioning as a fixed menu's export (`tf_ama.serving.export`). The
SavedModel holds the menu network's variables; its signatures compute the menu in the graph:

* `serving_default`: inputs `bids` float64 `[batch, m, n]`, `bidder_context` float64
  `[batch, m, d_x]`, `item_context` float64 `[batch, n, d_y]`; outputs `allocation`,
  `payments`, `menu_index` (and `owners` with the item-separable family), as for a fixed
  menu: `tf_ama.exact_outcome` on the float64 menu the network computes for each auction's
  contexts, bit for bit what `model((bids, bidder_context, item_context))` returns.
* `menu`: inputs `bidder_context`, `item_context`; outputs each auction's float64 menu
  (`allocations [batch, K, m, n]`, `boosts [batch, K]`, `bidder_weights [batch, m]` and
  `separable_boosts [batch, m + 1, n]` with the family), for audit.

The exact outcome is traced for static sizes: the export serves the sizes it is given
(default: the ones the model was trained on), any other size is refused with a message that
names the served ones. At a served size where the model has not made that choice
(`chosen_sizes`: a run makes it at its trained sizes), its menu first meets per-context
Myerson on `selection_samples` fresh auctions (`choose_sizes`): where it does not beat it by
2 paired standard errors, the export serves per-context Myerson at that size, as a run does
at its trained sizes (`ContextualAuction.myerson_sizes`). `tf_ama_config.json` records the
sizes served as Myerson and the choices made at export. Bad contexts (NaN, inf, wrong shape,
float32) are refused like bad bids. Outcomes are computed in blocks of exactly
`micro_batch_size` auctions (menus included; default: the model's, else
`tf_ama.core.blocks.outcome_block_size` of each size), so an auction's outcome does not
depend on the other requests in its batch.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from tf_ama.core import exactness, separable
from tf_ama.data.contexts import size_name
from tf_ama.evaluation.contextual import choose_sizes
from tf_ama.models.contextual import ContextualAuction, by_size, size_list, validate_contexts
from tf_ama.serving.checks import MENU_SIGNATURE, SERVING_SIGNATURE
from tf_ama.serving.versions import (ASSETS_EXTRA, CONFIG_FILE, WARMUP_FILE, ExportError,
                                     write_version)
from tf_ama.utils import checks, defaults, seeds
from tf_ama.utils.files import write_json_atomic
from tf_ama.utils.version import VERSION


class _ContextualServingModule(tf.Module):
    """The menu network plus the serving functions, one traced branch per served size."""

    def __init__(self, model, sizes, micro_batch_size):
        super().__init__(name="tf_ama_contextual_auction")
        self.model = model
        self.sizes = sizes
        self.micro_batch_size = micro_batch_size
        self.features = (model.setting.bidder_features, model.setting.item_features)

    def serve(self, bids, bidder_context, item_context):
        bidder_context, item_context = validate_contexts(bids, bidder_context, item_context,
                                                         *self.features)

        def outcome(sized, sized_bidder_context, sized_item_context):
            out = self.model((sized, sized_bidder_context, sized_item_context))
            served = {key: out[key] for key in ("allocation", "payments", "menu_index")}
            if self.model.menu_layer.separable:
                served["owners"] = separable.owner_codes(
                    out["menu_index"], self.model.served_entries(*sized.shape[1:]),
                    sized.shape[1], sized.shape[2])
            return served

        return by_size((bids, bidder_context, item_context), self.sizes, outcome)

    def menu(self, bidder_context, item_context):
        shape = [tf.shape(bidder_context)[0], tf.shape(bidder_context)[1],
                 tf.shape(item_context)[1]]
        bids = tf.zeros(shape, tf.float64)  # only its shape: the menu never sees a bid
        inputs = (bids, *validate_contexts(bids, bidder_context, item_context, *self.features))

        def menu(_, sized_bidder_context, sized_item_context):
            served = self.model.served_menu(sized_bidder_context, sized_item_context)
            return {name: value for name, value in served._asdict().items() if value is not None}

        return by_size(inputs, self.sizes, menu)


def _warmup(path, model, sizes):
    """TF Serving warm-up: one request of 1 auction per served size, values in [0, 1)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for k, size in enumerate(sizes):
            inputs = model.setting.sample(1, seed=k, size=size, dtype=tf.float64)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=SERVING_SIGNATURE))
            for name, value in zip(("bids", "bidder_context", "item_context"), inputs):
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy(), tf.float64))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def choices(model, sizes, num_samples, seed):
    """`choose_sizes` at the served `sizes` where `model` has not made that choice
    (`chosen_sizes`: a run's trained sizes) and does not already serve per-context Myerson
    ({} without the item-separable family or `uniform_bounds`, where Myerson is not known);
    each record with its `seed`."""
    open_sizes = [s for s in sizes
                  if s not in model.chosen_sizes and s not in model.myerson_sizes]
    if not open_sizes or not model.knows_myerson:
        return {}
    return {size: {**choice, "seed": seed}
            for size, choice in choose_sizes(model, open_sizes, num_samples, seed).items()}


def export_contextual(model, base_dir, version=None, sizes=None, training_config=None,
                      micro_batch_size=None, selection_samples=None, seed=None) -> str:
    """`tf_ama.export_saved_model` for a `ContextualAuction` (see the module docstring);
    `sizes`: the served sizes (default: the model's); `selection_samples` (default
    `tf_ama.utils.defaults.SELECTION_SAMPLES`), `seed` (default the model's selection seed):
    the auctions of each size not chosen yet on which its menu meets per-context Myerson
    (`choices`)."""
    if not isinstance(model, ContextualAuction):
        raise ExportError(f"`model` must be a tf_ama.ContextualAuction; got {type(model).__name__}.")
    sizes = size_list("sizes", model.sizes if sizes is None else sizes)
    selection_samples = checks.integer("selection_samples", defaults.SELECTION_SAMPLES
                                       if selection_samples is None else selection_samples,
                                       minimum=2)
    seed = seeds.selection_seed(model.seed) if seed is None else checks.seed("seed", seed)
    if not sizes:
        raise ExportError("`sizes` must name at least one size to serve, e.g. ['2x5'].")
    if micro_batch_size is None:  # the model's: per size, `outcome_block_size`
        micro_batch_size = model.micro_batch_size
    serving = ContextualAuction.from_config({**model.get_config(),
                                             "micro_batch_size": micro_batch_size})
    serving.set_weights(model.get_weights())
    chosen = choices(serving, sizes, selection_samples, seed)
    serving.serve_myerson_at([size for size, choice in chosen.items()
                              if choice["kept"] == "myerson"]).chose_at(list(chosen))
    module = _ContextualServingModule(serving, sizes, micro_batch_size)
    features = module.features

    def write(directory):
        archive = keras.export.ExportArchive()
        archive.track(serving)
        contexts = [tf.TensorSpec([None, None, features[0]], tf.float64, name="bidder_context"),
                    tf.TensorSpec([None, None, features[1]], tf.float64, name="item_context")]
        archive.add_endpoint(SERVING_SIGNATURE, module.serve, input_signature=[
            tf.TensorSpec([None, None, None], tf.float64, name="bids"), *contexts])
        archive.add_endpoint(MENU_SIGNATURE, module.menu, input_signature=contexts)
        archive.write_out(directory, verbose=False)
        assets = os.path.join(directory, ASSETS_EXTRA)
        os.makedirs(assets, exist_ok=True)
        _warmup(os.path.join(assets, WARMUP_FILE), model, sizes)
        write_json_atomic(os.path.join(assets, CONFIG_FILE), {
            "contextual": True,
            "setting": model.setting.to_dict(),
            "model": {k: v for k, v in serving.get_config().items()
                      if k not in ("name", "trainable", "dtype", "setting")},
            "training": training_config,
            "tf_ama_version": VERSION,
            "tensorflow_version": tf.__version__,
            "menu_size": int(model.menu_size),
            "serving": {"micro_batch_size": micro_batch_size,
                        "sizes": [size_name(s) for s in sizes],
                        "myerson_sizes": [size_name(s) for s in serving.myerson_sizes
                                          if s in sizes],
                        "chosen_at_export": chosen,
                        "signatures": [SERVING_SIGNATURE, MENU_SIGNATURE]},
            "exactness": exactness.contract(),
        })

    return write_version(os.fspath(base_dir), version, write)

