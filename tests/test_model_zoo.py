"""The model zoo of issue 16 (``benchmarks/zoo_nets.py``): every net computes the same function in
PyTorch, JAX and Keras from the same seeded weights, and the zoo benchmark
(``benchmarks/model_zoo.py --quick``) runs end to end on its smallest case."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import model_zoo  # noqa: E402
import zoo_nets  # noqa: E402

import igkit  # noqa: E402
from igkit.api import method_supported  # noqa: E402


def _outputs(net: str, framework: str, images: np.ndarray) -> np.ndarray:
    model = zoo_nets.build(net, framework, seed=3)
    x = zoo_nets.to_framework_layout(images, framework)
    if framework == "torch":
        with torch.no_grad():
            return model(torch.as_tensor(x)).numpy()
    return np.asarray(model(x))


@pytest.mark.parametrize("net", zoo_nets.NETS)
def test_every_framework_computes_the_same_function(net):
    images = zoo_nets.zoo_images(2, seed=5)
    outs = {fw: _outputs(net, fw, images) for fw in zoo_nets.FRAMEWORKS}
    ref = outs["torch"]
    assert ref.shape == (2, zoo_nets.NUM_CLASSES)
    # Not a constant: the two images and the classes get different outputs.
    assert np.ptp(ref) > 1e-2 and np.abs(ref[0] - ref[1]).max() > 1e-4
    for fw in ("jax", "keras"):
        assert np.abs(outs[fw] - ref).max() <= 1e-5 * np.abs(ref).max(), fw
    if net == "sequential":  # it ends in softmax
        np.testing.assert_allclose(ref.sum(axis=1), 1.0, rtol=1e-6)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others():
    a, b, c = (zoo_nets.zoo_params("vit", s) for s in (0, 0, 1))
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["b0.q.w"], c["b0.q.w"])


def test_quick_benchmark_runs_end_to_end(capsys):
    text = model_zoo.main(["--quick", "--frameworks", "torch,jax"])
    evaluations, cost = text.split("### Cost of one evaluation")
    rows = {}
    for line in evaluations.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 10 and cells[0] == "sequential":
            rows[cells[1]] = cells
    assert set(rows) == {"torch", "jax"}
    torch_row, jax_row = rows["torch"], rows["jax"]
    # igkit's Gauss-Legendre is Captum's rule: both need the same n on the same grid.
    assert torch_row[3] == torch_row[4] and int(torch_row[3]) in model_zoo.QUICK_GRID
    assert jax_row[3] == "not available"  # Captum is torch only
    assert int(jax_row[4]) == int(torch_row[4])  # the same function, the same need
    # The default's cell names the method it ran: one of igkit's registered rules.
    ran = torch_row[5].rsplit("(", 1)[1].rstrip(")")
    assert ran in igkit.available_methods()
    for fw, row in rows.items():
        framework = model_zoo.FRAMEWORK_OF[fw]
        assert (row[8] == "not available") == (not method_supported(framework, "secant"))
    assert "| sequential | torch |" in cost
