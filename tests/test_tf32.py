"""TF32 is off while igkit runs (unless ``precision="tf32"`` asks for it), and the user's flags
come back afterwards, also when the call fails.

PyTorch's ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` exist
on every build; igkit sets and restores them whatever the device, so CPU runs check the flags
themselves: the test sets each combination, a model records what it sees in its forward pass,
and the flags are read back after the call.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import igkit

FLAGS = list(itertools.product([False, True], repeat=2))  # (matmul, cudnn)


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _set(matmul: bool, cudnn: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@pytest.fixture(autouse=True)
def _keep_the_process_flags() -> Iterator[None]:
    saved = _flags()
    yield
    _set(*saved)


class Recording(torch.nn.Module):
    """A linear model (exact IG at any step count) that records the TF32 flags it runs under
    and can fail on a chosen call."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(12, 3)
        self.seen: list[tuple[bool, bool]] = []
        self.fail_at = fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(_flags())
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise RuntimeError("the model failed")
        return self.linear(x.flatten(1))


def _x() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (2, 3, 2, 2)).astype(np.float32)


@pytest.mark.parametrize(("matmul", "cudnn"), FLAGS)
def test_tf32_is_off_during_the_call_and_the_users_flags_are_restored(matmul: bool,
                                                                      cudnn: bool) -> None:
    _set(matmul, cudnn)
    model = Recording()
    igkit.integrated_gradients(model, _x(), target=0, steps=4)
    assert model.seen and set(model.seen) == {(False, False)}
    assert _flags() == (matmul, cudnn)
    model.seen.clear()
    igkit.gradients(model, _x(), target=0)
    assert model.seen and set(model.seen) == {(False, False)}
    assert _flags() == (matmul, cudnn)


@pytest.mark.parametrize(("matmul", "cudnn"), FLAGS)
def test_precision_tf32_turns_it_on_only_during_the_call(matmul: bool, cudnn: bool) -> None:
    _set(matmul, cudnn)
    model = Recording()
    igkit.integrated_gradients(model, _x(), target=0, steps=4, precision="tf32")
    assert set(model.seen) == {(True, True)}
    assert _flags() == (matmul, cudnn)


@pytest.mark.parametrize(("matmul", "cudnn"), FLAGS)
def test_flags_are_restored_when_the_model_fails_midway(matmul: bool, cudnn: bool) -> None:
    _set(matmul, cudnn)
    model = Recording(fail_at=4)  # after the checks' forward passes, inside the path
    with pytest.raises(RuntimeError, match="the model failed"):
        igkit.integrated_gradients(model, _x(), target=0, steps=4, batch_size=1)
    assert len(model.seen) == 4 and set(model.seen) == {(False, False)}
    assert _flags() == (matmul, cudnn)
