"""Export an `AffineMaximizerAuction` as a versioned SavedModel for TensorFlow Serving.

    path = tf_ama.export_saved_model(model, "models/additive_2x2_uniform")   # .../1, then .../2

Layout (TF Serving watches `base_dir` and serves the highest numeric version):

    <base_dir>/<version>/saved_model.pb
    <base_dir>/<version>/variables/                      the float64 menu
    <base_dir>/<version>/assets.extra/tf_serving_warmup_requests
    <base_dir>/<version>/assets.extra/tf_ama_config.json  setting, model and training config,
                                                         the exactness contract

Signatures:

* `serving_default`: input `bids` float64 `[batch, num_bidders, num_items]`; outputs
  `allocation` float64 `[batch, num_bidders, num_items]`, `payments` float64
  `[batch, num_bidders]`, `menu_index` int64 `[batch]`. Computed by
  `tf_ama.exact_outcome` on the float64 menu stored as variables: exact argmax, ties to the
  lowest index, float64 throughout. Bad bids are refused in the graph with a message naming
  the problem (wrong shape, non-finite, negative, above `tf_ama.core.exactness.MAX_BID` = 1e38);
  float32 tensors are refused by the signature itself ("expected to be a double tensor but
  is a float tensor"). Exactness contract (`tf_ama.core.exactness`, docs/design.md §2): outputs
  finite, `0 <= payments <= value`, each payment within `payment_error_bound` (~1e-14 at
  unit scale, independent of the payer's own bids) of the exact payment of the served entry.
* `menu`: input `dummy` int32 scalar (send 0; it is ignored, TF Serving needs one input);
  outputs `allocations` float64 `[menu_size, num_bidders, num_items]`, `boosts` float64
  `[menu_size]`, `bidder_weights` float64 `[num_bidders]`.

A menu with the item-separable family (`tf_ama.core.separable`: menu kinds `"separable"` and
`"lottery+separable"`) adds the output `separable_boosts` float64 `[num_bidders + 1,
num_items]` (`c`: rows the bidders, then nobody) to `menu`, and to `serving_default` the
output `owners` int64 `[batch, num_items]`: when a family entry was chosen (`menu_index >=
menu_size`), the owner of each item, 0 nobody and `i + 1` bidder `i`; -1 for every item
when an explicit entry was.

`tf_ama.exact_outcome` evaluates blocks of exactly `micro_batch_size` profiles (the batch is
zero-padded to whole blocks), so the outcome of a profile does not depend, bit for bit, on
the size of its batch or on the other profiles in it (TF Serving's batching merges
requests). Measured: without
the padding, a batch of 1 takes other matmul kernels and differs in the last bit from the same
profile in a larger batch (3x10 and 2x4 settings).

The export is atomic: the SavedModel is written to
`<base_dir>/.tmp-export-<host>-<pid>-<random>` (a name TF Serving ignores) and renamed to
`<base_dir>/<version>` when complete, so a watching server never sees half a model and an
export that fails midway (e.g. a full disk: an ExportError names `base_dir` and the fix) or
dies leaves no version folder (a killed export leaves its `.tmp-export-*` folder; the next
export on the same host removes it once its process is gone; a folder shared by several
hosts, e.g. over NFS, keeps other hosts' temporaries, whose processes cannot be checked from
here).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tf_ama.core import exactness, separable
from tf_ama.core.exactness import check_menu_limits
from tf_ama.core.mechanism import exact_outcome, menu_block_size
from tf_ama.data.settings import Setting
from tf_ama.evaluation.usage import prune as prune_menu
from tf_ama.models.auction import AffineMaximizerAuction
from tf_ama.models.contextual import ContextualAuction
from tf_ama.serving.checks import MENU_SIGNATURE, SERVING_SIGNATURE
from tf_ama.serving.versions import (ASSETS_EXTRA, CONFIG_FILE, EXISTING, WARMUP_FILE, ExportError,
                                     check_training_config, read_export_config, reexport_fix,
                                     resolve_version_dir, write_version)
from tf_ama.utils import checks, seeds
from tf_ama.utils.files import write_json_atomic
from tf_ama.utils.version import VERSION

# What loading a damaged SavedModel raises, by what is damaged (all measured): a truncated
# variables data file IndexError ("Read less bytes than requested"), a truncated variables
# index tf.errors.OpError ("not an sstable"), a missing one FileNotFoundError, a truncated
# saved_model.pb OSError ("Cannot parse file") or, when empty, ValueError (no MetaGraphs).
_DAMAGED_SAVED_MODEL_ERRORS = (OSError, ValueError, IndexError, tf.errors.OpError)


def _check_arguments(model, base_dir, version, prune, prune_samples, micro_batch_size):
    """Checks the arguments (`model` too, unless None)."""
    if model is not None and not isinstance(model, AffineMaximizerAuction):
        raise ExportError(
            f"`model` must be a tf_ama.AffineMaximizerAuction; got {type(model).__name__}. "
            "Load a trained run with tf_ama.training.runs.load_run(RUN_DIR)[0], or build a fixed one "
            "with AffineMaximizerAuction.from_menu(...).")
    if not isinstance(base_dir, (str, os.PathLike)) or not str(base_dir):
        raise ExportError(f"`base_dir` must be a directory path; got {base_dir!r}.")
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ExportError(
            f"`base_dir`={str(base_dir)!r} is a file, not a directory. Give the model's folder "
            "(e.g. models/additive_2x2_uniform); versions 1, 2, ... are created inside it.")
    try:
        checks.optional(checks.integer, "version", version, minimum=1,
                        maximum=checks.MAX_MODEL_VERSION)
        checks.optional(checks.integer, "prune_samples", prune_samples, minimum=1)
        checks.optional(checks.integer, "micro_batch_size", micro_batch_size, minimum=1)
        checks.boolean("prune", prune)
    except ValueError as error:
        raise ExportError(str(error)) from None


class _ServingModule(tf.Module):
    """The float64 menu as variables plus the two serving functions (no Keras at load time)."""

    def __init__(self, menu, micro_batch_size):
        super().__init__(name="tf_ama_auction")
        self.variables_by_name = {
            name: tf.Variable(value, dtype=tf.float64, trainable=False, name=name)
            for name, value in menu._asdict().items() if value is not None}
        self.menu_size, self.num_bidders, self.num_items = menu.allocations.shape
        self.micro_batch_size = micro_batch_size

    def serve(self, bids):
        # exact_outcome validates the bids in the graph (shape, then finite, then >= 0) and
        # evaluates blocks of exactly micro_batch_size profiles, so a profile's outcome does not
        # depend, bit for bit, on its batch (TF Serving's batching merges requests).
        outcome = exact_outcome(bids, **self.variables_by_name,
                                micro_batch_size=self.micro_batch_size)
        served = {key: outcome[key] for key in ("allocation", "payments", "menu_index")}
        if "separable_boosts" in self.variables_by_name:
            served["owners"] = separable.owner_codes(outcome["menu_index"], self.menu_size,
                                                     self.num_bidders, self.num_items)
        return served

    def menu(self, dummy):
        del dummy  # TF Serving rejects a signature without inputs
        return {name: tf.identity(variable) for name, variable in self.variables_by_name.items()}


def _warmup_bids(setting, seed):
    """A few bid profiles for TF Serving's warm-up: batch sizes 1 and 8, values in [0, 1)."""
    rng = np.random.default_rng(seed)
    shape = (setting.num_bidders, setting.num_items)
    return [rng.uniform(size=(1, *shape)), rng.uniform(size=(8, *shape))]


def _write_warmup(path, bids_batches):
    """TFRecord of `PredictionLog`s, each a `PredictRequest` for `serving_default`."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for bids in bids_batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=SERVING_SIGNATURE))
            request.inputs["bids"].CopyFrom(tf.make_tensor_proto(bids, dtype=tf.float64))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _write_saved_model(module, directory):
    """Writes the SavedModel with Keras's `ExportArchive` (one endpoint per signature)."""
    archive = keras.export.ExportArchive()
    archive.track(module)
    m, n = module.num_bidders, module.num_items
    archive.add_endpoint(SERVING_SIGNATURE, module.serve, input_signature=[
        tf.TensorSpec([None, m, n], tf.float64, name="bids")])
    archive.add_endpoint(MENU_SIGNATURE, module.menu, input_signature=[
        tf.TensorSpec([], tf.int32, name="dummy")])
    archive.add_variable_collection("menu_variables", list(module.variables_by_name.values()))
    archive.write_out(directory, verbose=False)


def _write_assets(model, directory, pruned, training_config, micro_batch_size, seed, kept_indices):
    assets = os.path.join(directory, ASSETS_EXTRA)
    os.makedirs(assets, exist_ok=True)
    _write_warmup(os.path.join(assets, WARMUP_FILE), _warmup_bids(model.setting, seed))
    config = {
        "setting": model.setting.to_dict(),
        "model": model.own_config(),
        "training": training_config,
        "pruned": pruned,
        "tf_ama_version": VERSION,
        "tensorflow_version": tf.__version__,
        "menu_size": int(model.menu_size),
        "serving": {"micro_batch_size": micro_batch_size,
                    "signatures": [SERVING_SIGNATURE, MENU_SIGNATURE]},
        "exactness": exactness.contract(),
    }
    if kept_indices is not None:
        # Explicit entry k of the exported menu is entry kept_indices[k] of the unpruned model;
        # a family entry k >= len(kept_indices) is entry k - len(kept_indices) + its menu_size.
        config["kept_indices"] = [int(k) for k in kept_indices]
    write_json_atomic(os.path.join(assets, CONFIG_FILE), config)


def export_saved_model(model, base_dir, version=None, prune=False, prune_samples=None,
                       seed=None, training_config=None, micro_batch_size=None, *,
                       sizes=None, selection_samples=None,
                       chunk_size=checks.RENAMED) -> str:
    """Exports `model` as `<base_dir>/<version>` (TF Serving layout); returns that path.

    Args:
      model: a `tf_ama.AffineMaximizerAuction` (learned or fixed), or a
        `tf_ama.ContextualAuction` (`tf_ama.serving.contextual_export`: signatures with contexts).
      base_dir: the model's folder, e.g. `models/additive_2x2_uniform` (created if missing).
      version: an int >= 1 that does not exist yet, or None for the next free version (one
        more than the highest existing one). An existing version is never overwritten.
      prune: export `tf_ama.evaluation.usage.prune(model, prune_samples, seed)` instead: only the
        menu entries that matter on `prune_samples` profiles (cheaper to serve).
      prune_samples, seed: the profiles `prune` uses (default 100 000; a model trained on
        data: its validation rows) (`seed` also draws the warm-up bids);
        default seed: the model's validation seed, `tf_ama.utils.seeds.validation_seed(model.seed)`.
      training_config: optional JSON-serializable dict stored in `tf_ama_config.json`.
      micro_batch_size: profiles per block of the exported graph (see the module docstring);
        default `tf_ama.core.mechanism.menu_block_size` of the exported menu. (`chunk_size`: its deprecated name.)
      sizes: a contextual model only: the sizes `(m, n)` (or `"3x7"`) served (default: the
        ones it was trained on).
      selection_samples: a contextual model only: at each served size where it has not
        chosen between its menu and per-context Myerson (a run chooses at its trained
        sizes), its menu meets Myerson on this many fresh auctions (`seed`, default the
        model's selection seed; default 50 000, `tf_ama.utils.defaults.SELECTION_SAMPLES`)
        and is served there only if it beats it (`tf_ama.serving.contextual_export`).

    Returns:
      The path of the new version folder.

    Raises:
      ExportError (a ValueError) naming the bad argument: `model` not an
      AffineMaximizerAuction, `base_dir` a file, `version` not an int >= 1 or already present,
      `training_config` not JSON, a menu outside the limits of `tf_ama.core.exactness` (bidder
      weights, boosts; refused before anything is written); or naming `base_dir` and the fix
      when writing fails (e.g. a full disk). A failed export leaves no version folder.
    """
    micro_batch_size = checks.renamed("chunk_size", chunk_size, "micro_batch_size",
                                      micro_batch_size)
    if isinstance(model, ContextualAuction):
        if prune:
            raise ExportError("`prune` is for one fixed menu; a contextual model computes a "
                              "menu per auction.")
        _check_arguments(None, base_dir, version, prune, prune_samples, micro_batch_size)
        check_training_config(training_config)
        if version is not None and os.path.exists(os.path.join(base_dir, str(version))):
            raise ExportError(EXISTING.format(version=version, base_dir=os.fspath(base_dir)))
        from tf_ama.serving.contextual_export import export_contextual

        return export_contextual(model, base_dir, version, sizes, training_config,
                                 micro_batch_size, selection_samples, seed)
    for name, value in (("sizes", sizes), ("selection_samples", selection_samples)):
        if value is not None:
            raise ExportError(f"`{name}` is for a contextual model (tf_ama.ContextualAuction).")
    _check_arguments(model, base_dir, version, prune, prune_samples, micro_batch_size)
    try:
        import tensorflow_serving.apis  # noqa: F401  (the warm-up requests)
    except ImportError:
        raise ExportError("Exporting writes TF Serving warm-up requests, which needs "
                          "tensorflow-serving-api: pip install -e \".[serving]\"") from None
    check_training_config(training_config)
    base_dir = os.fspath(base_dir)
    if version is not None and os.path.exists(os.path.join(base_dir, str(version))):
        raise ExportError(EXISTING.format(version=version, base_dir=base_dir))

    seed = seeds.validation_seed(model.seed) if seed is None else checks.seed("seed", seed)
    kept_indices = None
    if prune:
        model = prune_menu(model, num_samples=prune_samples, seed=seed)
        kept_indices = getattr(model, "kept_indices", None)
    menu = model.exact_menu()
    try:  # before anything is written: the exact outcome refuses such a menu at every request
        check_menu_limits(menu.boosts, menu.bidder_weights, menu.separable_boosts,
                          menu.size_boosts)
    except ValueError as error:
        raise ExportError(
            f"Not exported: the served auction would refuse every request for this menu. {error} "
            "(Multiplying all bidder weights and boosts by one positive constant leaves the "
            "auction unchanged.)") from None
    if micro_batch_size is None:
        micro_batch_size = menu_block_size(menu)
    module = _ServingModule(menu, micro_batch_size)

    def write(directory):
        _write_saved_model(module, directory)
        _write_assets(model, directory, prune, training_config, micro_batch_size, seed,
                      kept_indices)

    return write_version(base_dir, version, write)


def load_menu_model(saved_model_version_dir):
    """A fixed `AffineMaximizerAuction` rebuilt from an exported version folder.

    Reads the `menu` signature (the exact float64 menu) and the setting from
    `assets.extra/tf_ama_config.json`; used by `tf-ama evaluate SAVEDMODEL`. Given a model
    folder (`models/additive_2x2_uniform`), uses its highest version.

    Raises:
      ExportError (a ValueError) naming the folder or file: not a version folder, a damaged
      `tf_ama_config.json` or SavedModel (e.g. truncated variables), or a menu that
      `AffineMaximizerAuction.from_menu` refuses.
    """
    version_dir = resolve_version_dir(saved_model_version_dir)
    config = read_export_config(version_dir)
    if config.get("contextual"):
        raise ExportError(
            f"{str(version_dir)!r} is a contextual auction: its SavedModel computes a menu per "
            "auction from the contexts, so there is no one menu to rebuild. Evaluate its run "
            "directory (tf-ama evaluate RUN_DIR --sizes ...), or query the served model with "
            "contexts (tf-ama query ... --bidder-context ... --item-context ...).")
    try:
        setting = Setting.from_dict(config["setting"])
    except (TypeError, ValueError) as error:
        raise ExportError(
            f"{os.path.join(version_dir, ASSETS_EXTRA, CONFIG_FILE)!r} is damaged: its setting "
            f"is not valid. Delete the version folder {str(version_dir)!r} and "
            f"{reexport_fix(version_dir)}. ({type(error).__name__}: {checks.one_line(error)})") from None
    try:
        loaded = tf.saved_model.load(os.fspath(version_dir))
        menu = loaded.signatures[MENU_SIGNATURE](dummy=tf.constant(0, tf.int32))
    except (KeyError, *_DAMAGED_SAVED_MODEL_ERRORS) as error:
        raise ExportError(
            f"The version folder {str(version_dir)!r} is damaged: its SavedModel cannot be "
            f"loaded. Delete that folder and {reexport_fix(version_dir)}. "
            f"({type(error).__name__}: {checks.one_line(error)})") from error
    try:
        # from_menu keeps the exported float64 weights exactly
        return AffineMaximizerAuction.from_menu(
            setting, menu["allocations"].numpy(), menu["boosts"].numpy(),
            menu["bidder_weights"].numpy(),
            *(menu[name].numpy() if name in menu else None
              for name in ("separable_boosts", "size_boosts")),
            **{key: config["model"][key] for key in ("temperature",) if key in config["model"]})
    except ValueError as error:
        raise ExportError(
            f"The menu exported in {str(version_dir)!r} is refused: {checks.one_line(error)}") from None
