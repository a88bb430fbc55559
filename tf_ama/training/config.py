"""`TrainingConfig`: how a model is trained, field by field (`tf_ama.training.run.train_run`
runs it; `tf_ama.training.recipes` chooses one per setting; each field is one flag of `tf-ama train`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

from tf_ama.utils import defaults


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained (the model's own arguments live in its `get_config`)."""

    steps: int = 2000
    batch_size: int = 4096
    learning_rate: float = 0.01
    steps_per_epoch: int = 100
    validation_samples: int = 10_000
    evaluation_samples: int = 100_000
    # A contextual run: the fresh auctions per size (seed + 4) on which its trained menu must
    # beat per-context Myerson to be served at that size (tf_ama.training.contextual).
    selection_samples: int = defaults.SELECTION_SAMPLES
    jit_compile: object = "auto"  # Keras: XLA on accelerators, off on CPU-only machines
    # Temperature annealing (tf_ama.training.annealing): over the last `anneal_fraction` of the epochs,
    # lambda rises geometrically from the model's temperature to `final_temperature`, the
    # learning rate falling in proportion. None: the temperature stays fixed.
    final_temperature: Optional[float] = None
    anneal_fraction: float = 0.4
    # A soft start: over the first `warmup_fraction` of the epochs (at least one, ending
    # before annealing starts), lambda rises geometrically, one step per epoch, from
    # `initial_temperature` to the model's temperature, at the learning rate. None: none.
    initial_temperature: Optional[float] = None
    warmup_fraction: float = 0.5
    # Discrete settings: train and validate on every profile weighted by its probability
    # (tf_ama.expectation_dataset) instead of on samples; batch_size and
    # validation_samples are then unused.
    exact_expectation: bool = False
    # A "lottery+separable" menu (tf_ama.training.joining): after `steps` of its lottery menu alone,
    # `joint_steps` of both parts at `joint_learning_rate`, at the model's temperature.
    joint_steps: int = 1000
    joint_learning_rate: float = 0.001
    # Restarts: `restarts` initializations (model seeds seed + 1000 r, the same training
    # data) are trained for `restart_steps` (default: the steps before annealing, else half
    # the steps), each a run of its own in `out/restarts/r`; the one with the best exact
    # validation revenue is trained on to `steps`.
    restarts: int = 1
    restart_steps: Optional[int] = None
    # After training, the exact search of `tf_ama.training.polish` on the boosts (and learned bidder
    # weights), kept when it raises the exact revenue on a held-out sample.
    polish: bool = False
    polish_perturbations: int = 0  # of the polish's iterated local search (tf_ama.training.polish)

    def __post_init__(self):
        # Imported here: `tf-ama --help` reads this class's defaults and loads no NumPy.
        from tf_ama.utils import checks

        def checked(field, check, *args, **kwargs):  # stored as a plain int / float / bool
            object.__setattr__(self, field, check(field, getattr(self, field), *args, **kwargs))

        for field in ("steps", "batch_size", "steps_per_epoch", "validation_samples",
                      "evaluation_samples", "joint_steps", "restarts"):
            checked(field, checks.integer, minimum=1)
        checked("selection_samples", checks.integer, minimum=2)  # a standard error needs 2
        self.check_epochs("steps")
        checked("restart_steps", functools.partial(checks.optional, checks.integer), minimum=1)
        if not (isinstance(self.jit_compile, bool) or self.jit_compile == "auto"):
            raise ValueError(f"`jit_compile` must be 'auto', True or False; got {self.jit_compile!r}.")
        checked("learning_rate", checks.number, above=0)
        checked("joint_learning_rate", checks.number, above=0)
        checked("final_temperature", functools.partial(checks.optional, checks.number), above=0)
        checked("exact_expectation", checks.boolean)
        checked("anneal_fraction", checks.number, above=0, maximum=1)
        checked("polish", checks.boolean)
        checked("polish_perturbations", checks.integer, minimum=0)
        checked("initial_temperature", functools.partial(checks.optional, checks.number),
                above=0)
        checked("warmup_fraction", checks.number, above=0, maximum=1)
        warmup_steps = self.warmup_epochs * self.steps_per_epoch
        if self.restarts > 1 and warmup_steps > self.selection_steps:
            raise ValueError(f"The soft start ({warmup_steps} steps) must end before the "
                             f"restarts are compared (`restart_steps` {self.selection_steps}).")
        if self.restart_steps is not None:
            self.check_epochs("restart_steps")
            if self.restart_steps > self._constant_epochs() * self.steps_per_epoch:
                raise ValueError(
                    f"`restart_steps` ({self.restart_steps}) must be at most `steps` and end "
                    f"before annealing starts (step "
                    f"{self._constant_epochs() * self.steps_per_epoch}): restarts are compared "
                    "at the model's temperature.")

    def check_epochs(self, field):
        """Refuses `steps` or `joint_steps` (`field`) if not whole epochs (the joint steps are
        checked only for a menu that uses them)."""
        if getattr(self, field) % self.steps_per_epoch:
            raise ValueError(
                f"`{field}` ({getattr(self, field)}) must be a multiple of `steps_per_epoch` "
                f"({self.steps_per_epoch}): checkpoints are taken at epoch ends.")

    @property
    def epochs(self) -> int:
        return self.steps // self.steps_per_epoch

    @property
    def selection_steps(self) -> int:
        """The steps each restart trains before the best is chosen: `restart_steps`, or the
        steps before annealing starts, or half the steps (at least one epoch)."""
        if self.restart_steps is not None:
            return self.restart_steps
        epochs = self._constant_epochs() if self.final_temperature else self.epochs // 2
        return max(1, epochs) * self.steps_per_epoch

    @property
    def warmup_epochs(self) -> int:
        """The epochs of the soft start (0 without `initial_temperature`)."""
        if self.initial_temperature is None:
            return 0
        return min(self._constant_epochs(), max(1, round(self.warmup_fraction * self.epochs)))

    def _constant_epochs(self):
        """The epochs before annealing starts (all of them without annealing)."""
        if self.final_temperature is None:
            return self.epochs
        return self.epochs - max(1, round(self.anneal_fraction * self.epochs))

    def annealing_callbacks(self, temperature, scale_learning_rate=True):
        """`[TemperatureScheduler]` for this config's soft start and annealing from the
        model's `temperature`, or `[]`; `scale_learning_rate=False` for a learning rate that
        follows a schedule of its own (a contextual run's cosine)."""
        # Imported here: the rest of this module loads no Keras (tf-ama train --help shows
        # its defaults).
        from tf_ama.training.annealing import (TemperatureScheduler, annealing_schedule,
                                               warmup_schedule)

        schedule = None
        if self.final_temperature is not None:
            schedule = annealing_schedule(temperature, self.final_temperature, self.epochs,
                                          self._constant_epochs())
        if self.warmup_epochs:
            schedule = warmup_schedule(self.initial_temperature, temperature,
                                       self.warmup_epochs, schedule)
        return [] if schedule is None else [TemperatureScheduler(schedule, scale_learning_rate)]

    def to_dict(self):
        return dataclasses.asdict(self)
