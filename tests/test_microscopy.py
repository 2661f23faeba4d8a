"""Synthetic HPA cells, the shipped cell classifier, and whether IG points at the signal."""

from __future__ import annotations

import numpy as np
import pytest

from igkit.microscopy.synthetic import (
    CHANNELS,
    CLASSES,
    MODEL_CHANNELS,
    SEEDS,
    grow_mask,
    make_cell,
    make_cells,
)

# Measured with the shipped weights (scripts/train_microscopy.py, see README "Microscopy"):
# on the first 200 evaluation cells exact-match accuracy EXACT_MEASURED, macro F1 F1_MEASURED;
# on the first 24, 16 Gauss-Legendre steps: the in-mask shares and pointing-game rates below.
EXACT_MEASURED, F1_MEASURED = 0.965, 0.985
SHARE_MEASURED = {"integrated_gradients": 0.582, "gradients": 0.165, "random": 0.123}
POINTING_MEASURED = {"integrated_gradients": 0.812, "gradients": 0.375, "random": 0.219}


@pytest.fixture(scope="module")
def held_out():
    return make_cells(24, SEEDS["evaluation"])


@pytest.fixture(scope="module")
def net():
    from igkit.microscopy.model import build_model, shipped_weights

    return build_model(shipped_weights())


def test_cells_are_reproducible_and_independent_of_the_set_size():
    a = make_cells(3, seed=5)
    b = make_cells(3, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    tail = make_cells(2, seed=5, start=1)
    np.testing.assert_array_equal(tail.images, a.images[1:])
    np.testing.assert_array_equal(tail.labels, a.labels[1:])
    assert not np.array_equal(make_cells(1, seed=6).images, a.images[:1])
    assert a.images.shape == (3, 64, 64, 4) and a.images.dtype == np.float32
    assert a.masks.shape == (3, len(CLASSES), 64, 64) and a.masks.dtype == bool
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_labels_are_one_or_two_compartments_and_cover_every_class():
    cells = make_cells(120, seed=9, masks=False)
    counts = cells.labels.sum(axis=1)
    assert set(counts.tolist()) == {1, 2}
    assert 0.15 < (counts == 2).mean() < 0.45
    assert np.all(cells.labels.sum(axis=0) > 0)
    assert cells.masks is None
    assert cells.target_lists()[0] == np.flatnonzero(cells.labels[0]).tolist()
    assert cells.model_input().shape == (120, 3, 64, 64)


def test_masks_are_consistent_compartments(held_out):
    m = held_out.masks
    nucleoplasm, nucleoli, nuclear_membrane, mito, cytosol, plasma = (m[:, k] for k in range(6))
    assert np.all(m.sum(axis=(2, 3)) > 0)  # every compartment exists in every cell
    assert not np.any(nucleoplasm & cytosol) and not np.any(nucleoli & cytosol)
    assert not np.any(nucleoli & nucleoplasm)
    assert np.all(mito <= cytosol)  # mitochondria lie in the cytoplasm
    # The membranes are thin rings: much smaller than the regions they bound.
    assert np.all(nuclear_membrane.sum(axis=(1, 2)) < nucleoplasm.sum(axis=(1, 2)) + 400)
    assert np.all(plasma.sum(axis=(1, 2)) < cytosol.sum(axis=(1, 2)))


def test_the_green_signal_sits_in_the_labelled_compartments(held_out):
    green = held_out.images[..., CHANNELS.index("green")].astype(np.float64)
    for i in range(len(held_out)):
        # Above the camera background and its noise (std 0.012).
        signal = np.clip(green[i] - np.median(green[i]) - 0.04, 0, None)
        truth = np.zeros(green.shape[1:], dtype=bool)
        for k in np.flatnonzero(held_out.labels[i]):
            truth |= grow_mask(held_out.masks[i, k], 1)
        share = signal[truth].sum() / signal.sum()
        assert share > 0.85, (i, held_out.label_names(i), share)
        # Compartments without the protein hold little of it (beyond their overlap with truth).
        for k in np.flatnonzero(~held_out.labels[i]):
            alone = held_out.masks[i, k] & ~truth
            if alone.sum() > 20:
                assert signal[alone].mean() < 0.5 * signal[truth].mean()


def test_make_cell_rejects_tiny_images():
    with pytest.raises(ValueError, match="at least 32"):
        make_cell(0, 0, size=16)


def test_shipped_model_loads_by_name_with_channels_labels_and_sigmoid():
    import igkit

    loaded = igkit.load_model("hpa_synthetic")
    assert loaded.channels == MODEL_CHANNELS == ("red", "green", "blue")
    assert loaded.labels == list(CLASSES) and loaded.default_output == "sigmoid"
    assert loaded.input_size == (64, 64) and loaded.channels_first
    out = loaded.predict(np.zeros((2, 64, 64, 3), np.float32))
    assert out.shape == (2, len(CLASSES))
    # Trained with empty fields: a black image, IG's baseline, is predicted as no compartment.
    assert np.all(1 / (1 + np.exp(-out)) < 0.2)


def test_shipped_weights_are_small_and_plain(tmp_path):
    from igkit.microscopy.model import build_model, load_state, shipped_weights

    path = shipped_weights()
    assert path.stat().st_size < 1_000_000
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype == np.float32 for k in data.files)
    np.savez(tmp_path / "bad.npz", **{"head.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="do not fit the network"):
        load_state(build_model(), tmp_path / "bad.npz")


def test_shipped_model_held_out_accuracy(net):
    from igkit.microscopy.training import classification_metrics, predict

    cells = make_cells(200, SEEDS["evaluation"], masks=False)
    metrics = classification_metrics(predict(net, cells.model_input()), cells.labels)
    assert metrics["exact_match"] >= EXACT_MEASURED - 0.03, metrics
    assert metrics["macro_f1"] >= F1_MEASURED - 0.02, metrics


def test_ig_points_at_the_signal_better_than_gradients_and_random(net, held_out):
    from igkit.microscopy.evaluate import evaluate

    result = evaluate(net, held_out, steps=16)
    summary = result.summary()
    share = {m: summary[m][0] for m in SHARE_MEASURED}
    hits = {m: summary[m][1] for m in POINTING_MEASURED}
    # The claim of issue 5, with margin: IG's in-mask share beats both.
    assert share["integrated_gradients"] > share["gradients"] + 0.15, share
    assert share["integrated_gradients"] > share["random"] + 0.2, share
    assert hits["integrated_gradients"] > hits["gradients"] + 0.1, hits
    assert hits["integrated_gradients"] > hits["random"] + 0.2, hits
    # And the numbers stay near what was measured (a regression check of the whole chain).
    for method, value in SHARE_MEASURED.items():
        assert abs(share[method] - value) < 0.05, (method, share)
    for method, value in POINTING_MEASURED.items():
        assert abs(hits[method] - value) < 0.1, (method, hits)
    assert np.median(result.ig_relative_error) < 0.1  # 16 steps: 6.7 % measured
    assert len(result.cell) == sum(len(t) for t in held_out.target_lists())
    assert "| Integrated Gradients |" in result.table()
