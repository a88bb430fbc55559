"""tf_ama.utils.footprint: jobs that certainly cannot fit in memory are refused up front, naming
the sizes and the fix (the machine's memory is replaced by a fixed number here)."""

import os

import numpy as np
import pytest

import tf_ama
from tf_ama.utils import footprint
from tf_ama.training.run import TrainingConfig, train_run


def test_the_available_memory_is_known_on_linux():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("not Linux")
    available = footprint.available_bytes()
    assert isinstance(available, int) and available > 0


def test_training_bytes_counts_the_steps_tensors():
    m, n, variables, menu_size, batch, validation = 3, 10, 5000, 64, 128, 1000
    expected = (4 * 3 * variables  # gradient and Adam's two moments, float32
                + 4 * batch * m * n + 8 * batch * m * n  # the batch, float32 and float64
                + 2 * 4 * menu_size * m * n  # allocations and their gradient, float32
                + 8 * validation * m * n)  # the validation sample, float64
    assert footprint.training_bytes(m, n, variables, menu_size, batch, validation) == expected


def test_check_fits_refuses_only_beyond_the_available(monkeypatch):
    monkeypatch.setattr(footprint, "available_bytes", lambda: 2_000_000_000)
    footprint.check_fits("a job", 2_000_000_000, "fix")
    with pytest.raises(ValueError, match=r"^a job needs at least 2 GB of memory, but this machine "
                                         r"has 2 GB available: make it smaller\.$"):
        footprint.check_fits("a job", 2_000_000_001, "make it smaller.")
    monkeypatch.setattr(footprint, "available_bytes", lambda: None)
    footprint.check_fits("a job", 10**30, "fix")  # not known: nothing refused


def test_a_menu_too_large_for_the_memory_is_refused_before_it_is_built(monkeypatch):
    monkeypatch.setattr(footprint, "available_bytes", lambda: 10**8)
    setting = tf_ama.Setting("wide", 2, 10_000)
    with pytest.raises(ValueError, match=r"A lottery menu of 1024 entries for 2 bidders x 10000 "
                                         r"items \(3.07e\+07 parameters\) needs at least 0.246 GB"):
        tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=1024)
    model = tf_ama.AffineMaximizerAuction(setting, menu="lottery", menu_size=16)
    assert model.menu_size == 16


def test_a_run_whose_step_cannot_fit_is_refused_before_anything_is_written(monkeypatch,
                                                                            tmp_path):
    setting = tf_ama.Setting("wide", 2, 10_000)
    model_kwargs = {"menu": "lottery", "menu_size": 4}
    training = TrainingConfig(steps=1, steps_per_epoch=1, batch_size=4096)
    needed = footprint.training_bytes(2, 10_000, 3 * 3 * 10_000 + 3, 4, 4096, 10_000)
    monkeypatch.setattr(footprint, "available_bytes", lambda: needed // 2)
    with pytest.raises(ValueError, match=r"Training wide \(2x10000, batch 4096, menu of 4 "
                                         r"entries\) needs at least .* give a smaller "
                                         r"--batch-size \(each profile costs 0.00024 GB\)"):
        train_run(setting, tmp_path / "run", model_kwargs, training)
    assert not (tmp_path / "run").exists()


def test_a_setting_whose_parameters_cannot_fit_is_refused(monkeypatch):
    monkeypatch.setattr(footprint, "available_bytes", lambda: 10**6)
    with pytest.raises(ValueError, match=r"Setting 'huge': its distribution's parameters, each "
                                         r"broadcast to \[num_bidders, num_items\] = "
                                         r"\[2, 1000000\], needs at least 0.032 GB"):
        tf_ama.Setting("huge", 2, 1_000_000)
    assert np.prod(tf_ama.Setting("small", 2, 1000).sample(1, 0).shape) == 2000
