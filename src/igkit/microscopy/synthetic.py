"""Synthetic single-cell images in the Human Protein Atlas style, with the truth known.

The HPA model and images cannot be downloaded here, so this generator makes cells whose class is
*where* the protein signal sits, which is the question the HPA classifier answers and the one an
attribution method should point at. Each cell is four channels, as HPA stores them:

* red: microtubules, filaments running from near the nucleus to the cell edge;
* green: the protein of interest, placed in one or two compartments (the labels);
* blue: the nucleus (DAPI-like), dimmer in the nucleoli;
* yellow: the endoplasmic reticulum, a network that thins out away from the nucleus.

The compartments (:data:`CLASSES`) are defined relative to the nucleus and the cell outline:
nucleoplasm, nucleoli, the nuclear membrane (the nucleus rim), mitochondria (short worms in the
cytoplasm), cytosol (the cytoplasm, diffuse) and the plasma membrane (the cell rim). A cell
carries one location, or two with probability ``p_two``. For every cell the generator returns the
ground-truth mask of each compartment, so "does the attribution fall where the signal is" can be
measured (see :mod:`igkit.microscopy.evaluate`).

Generation uses only NumPy. Cell ``i`` of a set with seed ``s`` is drawn from
``numpy.random.default_rng([s, i])``, so a cell does not depend on how many others are drawn and
sets with different seeds are disjoint draws (training uses seed 0, validation 1, evaluation 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHANNELS",
    "CLASSES",
    "MODEL_CHANNELS",
    "SEEDS",
    "CellSet",
    "grow_mask",
    "make_cell",
    "make_cells",
]

#: Compartments, in the order of the model's outputs.
CLASSES: tuple[str, ...] = (
    "nucleoplasm",
    "nucleoli",
    "nuclear membrane",
    "mitochondria",
    "cytosol",
    "plasma membrane",
)
#: The four stains, in the order of the images' channel axis (HPA's RGBY).
CHANNELS: tuple[str, ...] = ("red", "green", "blue", "yellow")
#: The channels the model takes (it drops yellow, as the HPA notebook's model does).
MODEL_CHANNELS: tuple[str, ...] = ("red", "green", "blue")
#: Seeds of the training, validation and evaluation sets.
SEEDS: dict[str, int] = {"train": 0, "validation": 1, "evaluation": 2}

_DEFAULT_SIZE = 64


@dataclass(frozen=True)
class CellSet:
    """A batch of synthetic cells.

    Attributes:
        images: ``(N, H, W, 4)`` float32 in [0, 1], channels in :data:`CHANNELS` order.
        labels: ``(N, K)`` bool, the compartments holding the green signal.
        masks: ``(N, K, H, W)`` bool, every compartment's region in each cell (labelled or not),
            or None when not asked for.
        seed: The set's seed.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    seed: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def label_names(self, index: int) -> list[str]:
        """The class names of cell ``index``."""
        return [CLASSES[k] for k in np.flatnonzero(self.labels[index])]

    def target_lists(self) -> list[list[int]]:
        """Each cell's true classes, the ragged ``target=`` of "explain every true label"."""
        return [np.flatnonzero(row).tolist() for row in self.labels]

    def model_input(self) -> np.ndarray:
        """``(N, 3, H, W)`` float32: the red, green and blue channels, channels first."""
        picks = [CHANNELS.index(c) for c in MODEL_CHANNELS]
        return np.ascontiguousarray(self.images[..., picks].transpose(0, 3, 1, 2))


def make_cells(
    n: int,
    seed: int = 0,
    *,
    size: int = _DEFAULT_SIZE,
    p_two: float = 0.3,
    masks: bool = True,
    start: int = 0,
) -> CellSet:
    """``n`` synthetic cells, cells ``start .. start + n - 1`` of the set with ``seed``.

    Args:
        n: Number of cells.
        seed: The set's seed (see :data:`SEEDS`).
        size: Image side in pixels (at least 32).
        p_two: Probability that a cell carries two locations.
        masks: Also return the compartment masks.
        start: Index of the first cell, to draw a set in pieces.

    Returns:
        The cells.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    images = np.empty((n, size, size, len(CHANNELS)), dtype=np.float32)
    labels = np.zeros((n, len(CLASSES)), dtype=bool)
    all_masks = np.zeros((n, len(CLASSES), size, size), dtype=bool) if masks else None
    for j in range(n):
        image, label, mask = make_cell(seed, start + j, size=size, p_two=p_two)
        images[j], labels[j] = image, label
        if all_masks is not None:
            all_masks[j] = mask
    return CellSet(images, labels, all_masks, seed)


def make_cell(
    seed: int, index: int, *, size: int = _DEFAULT_SIZE, p_two: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell ``index`` of the set with ``seed``: image ``(H, W, 4)``, labels ``(K,)``, masks
    ``(K, H, W)`` (see :func:`make_cells`)."""
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    rng = np.random.default_rng([int(seed), int(index)])
    scale = size / _DEFAULT_SIZE
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)

    # Cell outline: a wobbly ellipse around the centre, and its signed distance to the edge.
    cell_c = size / 2 + rng.uniform(-3, 3, size=2) * scale
    cell_r = rng.uniform(22, 27) * scale
    _, cell_depth = _blob(yy, xx, cell_c, cell_r, rng.uniform(0.8, 1.0), rng, wobble=0.08)
    # Nucleus: inside the cell, pushed a little off-centre.
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0, 4) * scale
    nuc_c = cell_c + shift * np.array([np.sin(angle), np.cos(angle)])
    nuc_r = rng.uniform(9.5, 12) * scale
    _, nuc_depth = _blob(yy, xx, nuc_c, nuc_r, rng.uniform(0.75, 1.0), rng, wobble=0.05)

    # Compartments. Depths are distances inside the outline (negative outside), in pixels.
    rim = 1.6 * scale
    nuclear_membrane = np.abs(nuc_depth) <= rim
    plasma_membrane = np.abs(cell_depth) <= rim
    nucleoli_centres = _points_inside(rng, nuc_depth, rng.integers(1, 4), min_depth=4.0 * scale)
    nucleoli_field = np.zeros_like(yy)
    for cy, cx in nucleoli_centres:
        radius = rng.uniform(1.5, 2.4) * scale
        nucleoli_field = np.maximum(
            nucleoli_field, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        )
    nucleoli = nucleoli_field > 0.35
    nucleoplasm = (nuc_depth > rim) & ~grow_mask(nucleoli, 1)
    cytoplasm = (cell_depth > rim) & (nuc_depth < -rim)
    mito_field = _worms(rng, yy, xx, cytoplasm, count=rng.integers(9, 15), scale=scale)
    mitochondria = (mito_field > 0.25) & cytoplasm
    cytosol = cytoplasm
    regions = np.stack(
        [nucleoplasm, nucleoli, nuclear_membrane, mitochondria, cytosol, plasma_membrane]
    )

    # Which compartments hold the protein.
    first = int(rng.integers(len(CLASSES)))
    chosen = [first]
    if rng.random() < p_two:
        others = [k for k in range(len(CLASSES)) if k != first]
        chosen.append(int(rng.choice(others)))
    labels = np.zeros(len(CLASSES), dtype=bool)
    labels[chosen] = True

    texture = _smooth_noise(rng, size, 3.0 * scale)
    green = np.zeros_like(yy)
    for k in chosen:
        level = rng.uniform(0.45, 1.0)
        pattern = {
            0: nucleoplasm * (0.75 + 0.25 * texture),
            1: nucleoli_field * (nuc_depth > 0),
            2: nuclear_membrane * 1.0,
            3: np.clip(mito_field, 0, 1) * cytoplasm,
            4: cytosol * (0.6 + 0.4 * texture),
            5: plasma_membrane * 1.0,
        }[k]
        green = np.maximum(green, level * pattern)

    # Reference stains.
    blue = (nuc_depth > 0) * (0.65 + 0.35 * _smooth_noise(rng, size, 2.0 * scale))
    blue *= 1.0 - 0.45 * nucleoli_field
    blue *= rng.uniform(0.6, 1.0)
    red = _microtubules(rng, yy, xx, nuc_c, nuc_r, cell_depth, nuc_depth, scale)
    red = red * rng.uniform(0.35, 0.7) + 0.1 * cytoplasm
    er_net = _smooth_noise(rng, size, 1.5 * scale)
    er_net = np.clip((er_net - 0.45) * 4.0, 0.0, 1.0)
    falloff = np.exp(np.minimum(nuc_depth, 0.0) / (7.0 * scale))
    yellow = (cell_depth > 0) * (nuc_depth < 0) * er_net * falloff * rng.uniform(0.5, 0.9)

    image = np.stack([red, green, blue, yellow], axis=-1)
    image = _blur(image, 0.7 * scale)
    background = rng.uniform(0.01, 0.04, size=4)
    image = image + background + rng.normal(0.0, 0.012, size=image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return image, labels, regions


# ------------------------------------------------------------------------------- geometry


def _blob(
    yy: np.ndarray,
    xx: np.ndarray,
    centre: np.ndarray,
    radius: float,
    aspect: float,
    rng: np.random.Generator,
    *,
    wobble: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A rotated ellipse with a wobbly outline: the inside mask and the depth inside it (pixels,
    approximately the distance to the outline along the radius; negative outside)."""
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - centre[0], xx - centre[1]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    rho = np.hypot(u, v / aspect)
    phi = np.arctan2(v / aspect, u)
    outline = np.ones_like(phi)
    for harmonic in (2, 3, 5):
        outline += wobble * rng.normal() / harmonic * np.cos(harmonic * phi + rng.uniform(0, 6.3))
    edge = radius * outline
    # rho is in units of the long axis; scale the depth to pixels along the actual radius.
    stretch = np.hypot(u, v) / np.maximum(rho, 1e-9)
    depth = (edge - rho) * stretch
    return depth > 0, depth


def _points_inside(
    rng: np.random.Generator, depth: np.ndarray, count: int, *, min_depth: float
) -> list[tuple[float, float]]:
    ys, xs = np.nonzero(depth > min_depth)
    if ys.size == 0:
        ys, xs = np.nonzero(depth == depth.max())
    picks = rng.choice(ys.size, size=min(int(count), ys.size), replace=False)
    return [(float(ys[p]), float(xs[p])) for p in picks]


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation of an ``(H, W)`` mask by a square of side ``2 * pixels + 1`` (NumPy)."""
    out = mask.astype(bool).copy()
    for _ in range(pixels):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _worms(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    region: np.ndarray,
    *,
    count: int,
    scale: float,
) -> np.ndarray:
    """Short, thick, curving tubes (mitochondria) starting inside ``region``; a [0, 1] field."""
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return np.zeros_like(yy)
    step = 0.5 * scale
    points = []
    for _ in range(int(count)):
        p = rng.integers(ys.size)
        y, x = float(ys[p]), float(xs[p])
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.uniform(4, 9) * scale / step) + 1):
            points.append((y, x))
            heading += rng.normal(0, 0.35)
            y += step * np.sin(heading)
            x += step * np.cos(heading)
    return _draw_curves(np.asarray(points), yy.shape[0], step, 1.0 * scale)


def _microtubules(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    nuc_c: np.ndarray,
    nuc_r: float,
    cell_depth: np.ndarray,
    nuc_depth: np.ndarray,
    scale: float,
) -> np.ndarray:
    """Thin filaments radiating from the nucleus to the cell edge, gently curving."""
    step = 0.5 * scale
    radii = np.arange(0.5 * nuc_r, yy.shape[0], step)
    points = []
    for _ in range(int(rng.integers(12, 20))):
        a0 = rng.uniform(-np.pi, np.pi)
        angles = a0 + rng.normal(0, 0.012 / scale) * radii
        points.append(
            np.stack([nuc_c[0] + radii * np.sin(angles), nuc_c[1] + radii * np.cos(angles)], axis=1)
        )
    field = _draw_curves(np.concatenate(points), yy.shape[0], step, 0.6 * scale)
    return field * (cell_depth > 0) * (nuc_depth < -0.5 * scale)


def _draw_curves(points: np.ndarray, size: int, spacing: float, width: float) -> np.ndarray:
    """Curves given as points ``spacing`` apart, drawn as Gaussian profiles of std ``width``:
    the points are splatted bilinearly, blurred, and scaled so a curve's ridge is about 1."""
    grid = np.zeros((size + 1, size + 1))
    y, x = points[:, 0], points[:, 1]
    keep = (y >= 0) & (y < size - 1) & (x >= 0) & (x < size - 1)
    y, x = y[keep], x[keep]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, dx, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        np.add.at(grid, (y0 + dy, x0 + dx), w)
    field = _blur(grid[:size, :size, None], width)[..., 0]
    ridge = 1.0 / (spacing * np.sqrt(2 * np.pi) * width)
    return np.clip(field / ridge, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to [0, 1]."""
    noise = _blur(rng.normal(size=(size, size, 1)), sigma)[..., 0]
    lo, hi = noise.min(), noise.max()
    return (noise - lo) / (hi - lo) if hi > lo else np.zeros_like(noise)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(H, W, C)`` array over H and W (reflecting edges)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(
            out,
            [(radius, radius) if a == axis else (0, 0) for a in range(out.ndim)],
            mode="reflect",
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.size, axis=axis)
        out = windows @ kernel
    return out
