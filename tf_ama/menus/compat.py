"""Compatibility with tf_ama 0.1, where the menu was not a layer of its own.

`Version01Compatibility` is a mixin of `AffineMaximizerAuction`:

* files saved by 0.1 (`model.keras`, checkpoints' `.weights.h5`) stored the menu's and the
  bidder weights' variables as the model's own; `load_own_variables` assigns them to the
  layers (`LoadedByModel` is the layers' side; tests/compat_test.py loads such files and
  checks their recorded outcomes);
* the model attributes of 0.1 (`model.learned_boosts`, ...) are now the layers': they still
  work, with a DeprecationWarning naming the new place.

0.1's flat constructor arguments (`menu="lottery", menu_size=...`) are not deprecated: they
are the options of the named menu kind (`tf_ama.menus.layers.MenuLayer.for_setting`).
"""

from __future__ import annotations

import warnings


class LoadedByModel:
    """Mixin of the model's layers: their values, loaded by the model from a 0.1 file
    (`Version01Compatibility.load_own_variables`), are not looked for again in the file."""

    _values_loaded = False

    def mark_loaded(self):
        self._values_loaded = True

    def load_own_variables(self, store):
        if self._values_loaded and not len(store.keys()):
            return
        super().load_own_variables(store)


class Version01Compatibility:
    """Mixin for a model with `menu_layer` and `bidder_weights_layer` attributes."""

    def load_own_variables(self, store):
        """Loads a file saved by tf_ama 0.1, where the menu's and the weights' variables were
        the model's own: trainable ones first, each group in creation order (Keras' order)."""
        if not len(store.keys()):
            return
        layers = (self.menu_layer, self.bidder_weights_layer)
        variables = ([v for layer in layers for v in layer._trainable_variables]
                     + [v for layer in layers for v in layer._non_trainable_variables])
        if len(store.keys()) != len(variables):
            raise ValueError(f"The saved model has {len(store.keys())} variables where this "
                             f"{self.menu_layer.kind} menu has {len(variables)}.")
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])
        for layer in layers:
            layer.mark_loaded()

    _RENAMED = {  # tf_ama 0.1 attribute -> (layer attribute, its variable or value)
        "menu_type": ("menu_layer", "kind"), "init_scale": ("menu_layer", "init_scale"),
        "boost_init_scale": ("menu_layer", "boost_init_scale"),
        "allocation_logits": ("menu_layer", "allocation_logits"),
        "learned_boosts": ("menu_layer", "boosts"),
        "fixed_allocations": ("menu_layer", "allocations"),
        "log_bidder_weights": ("bidder_weights_layer", "log_weights"),
        "fixed_bidder_weights": ("bidder_weights_layer", "given_weights"),
    }

    def __getattr__(self, name):
        # Only for names not found otherwise: the attributes of tf_ama 0.1, now the layers'.
        # Resolved before warning, so that `hasattr` probes of other names stay silent.
        renamed = type(self)._RENAMED.get(name)
        layer = self.__dict__.get(renamed[0]) if renamed else None
        if layer is None or not hasattr(layer, renamed[1]):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"`model.{name}` is deprecated: use `model.{renamed[0]}.{renamed[1]}`.",
                      DeprecationWarning, stacklevel=2)
        return getattr(layer, renamed[1])
