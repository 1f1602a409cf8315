"""Shared fixtures. (No tests/__init__.py: torch-fidelity installs a top-level `tests` package.)"""
import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("DEFECTLAB_QUICK", "0") not in ("", "0", "false", "False"):
    # quick mode trains tiny domain priors (seconds): in a folder of this test process, not the user's cache
    import tempfile

    os.environ.setdefault("DEFECTLAB_PRIOR_CACHE", tempfile.mkdtemp(prefix="defectlab-prior-"))

from defectlab.config import magnetic_tile_dir, shared_dir  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_root():
    root = shared_dir()
    if root is None:
        pytest.skip("../shared is not on this machine")
    return root


@pytest.fixture
def magnetic_tile_root():
    root = magnetic_tile_dir()
    if root is None:
        pytest.skip("../shared/datasets/magnetic_tile is not on this machine")
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread (and do not fight other processes for the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rgb_image(rng):
    return rng.random((64, 80, 3), dtype=np.float32)


@pytest.fixture
def grey_image(rng):
    return rng.random((72, 56, 1), dtype=np.float32)
