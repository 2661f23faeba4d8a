"""Training the synthetic-cell CNN reproducibly on a CPU, and scoring a multi-label classifier.

``scripts/train_microscopy.py`` is the command-line front of :func:`train`. Everything random is
seeded: the cells (by :mod:`igkit.microscopy.synthetic`'s per-cell seeds), the initial weights,
the batch order and the flips; PyTorch runs with deterministic algorithms and a fixed thread
count, so a run on the same machine reproduces the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from igkit.microscopy.synthetic import CLASSES, SEEDS, make_cells

__all__ = ["TrainConfig", "classification_metrics", "metrics_table", "predict", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train` trains.

    Attributes:
        n_train: Training cells (seed ``SEEDS["train"]``).
        n_empty: Empty fields (camera background and noise, no cell) with no label, so that a
            black image, IG's baseline, scores near zero for every class, as the HPA model's
            "negative" class intends.
        epochs: Passes over the training cells.
        batch_size: Cells per optimiser step.
        learning_rate: Peak Adam learning rate (cosine decay to zero).
        weight_decay: AdamW weight decay.
        seed: Seed of the weights, batch order and flips.
        threads: PyTorch CPU threads (fixed for reproducibility).
    """

    n_train: int = 6000
    n_empty: int = 240
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2


def train(config: TrainConfig, log: Callable[[str], None] = print) -> object:
    """Trains the network of :func:`igkit.microscopy.model.build_model` and returns it (eval).

    Augmentation: random horizontal/vertical flips and 90-degree rotations (a cell's class does
    not depend on its orientation). The normalisation buffers are set from the training cells.
    """
    import torch

    from igkit.microscopy.model import build_model

    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    cells = make_cells(config.n_train, SEEDS["train"], masks=False)
    empty = _empty_fields(config.n_empty, cells.images.shape[1], config.seed)
    x_all = torch.from_numpy(np.concatenate([cells.model_input(), empty]))
    y_all = torch.from_numpy(
        np.concatenate(
            [cells.labels.astype(np.float32), np.zeros((len(empty), len(CLASSES)), np.float32)]
        )
    )
    count = x_all.shape[0]
    log(
        f"generated {len(cells)} training cells and {len(empty)} empty fields in "
        f"{time.perf_counter() - started:.1f} s"
    )

    net = build_model()
    with torch.no_grad():
        net.norm.mean.copy_(x_all.mean(dim=(0, 2, 3)).view(1, -1, 1, 1))
        net.norm.std.copy_(x_all.std(dim=(0, 2, 3)).view(1, -1, 1, 1))
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = (count + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15,
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(count, generator=generator)
        total = 0.0
        tic = time.perf_counter()
        for start in range(0, count, config.batch_size):
            idx = order[start : start + config.batch_size]
            xb = _augment(x_all[idx], generator)
            loss = loss_fn(net(xb), y_all[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * idx.shape[0]
        log(
            f"epoch {epoch + 1}/{config.epochs}: loss {total / count:.4f} "
            f"({time.perf_counter() - tic:.1f} s)"
        )
    log(f"trained in {time.perf_counter() - started:.1f} s")
    return net.eval()


def _empty_fields(n: int, size: int, seed: int) -> np.ndarray:
    """``(n, 3, size, size)`` float32 fields of background and noise (some exactly black)."""
    rng = np.random.default_rng([seed, 1_000_003])
    level = rng.uniform(0.0, 0.05, size=(n, 3, 1, 1))
    noise = rng.normal(0.0, 0.012, size=(n, 3, size, size)) * (rng.random((n, 1, 1, 1)) < 0.75)
    fields = np.clip(level * (rng.random((n, 1, 1, 1)) < 0.9) + noise, 0.0, 1.0)
    return fields.astype(np.float32)


def _augment(x: object, generator: object) -> object:
    """Random flips and quarter turns, one draw per batch (keeps the step cheap)."""
    import torch

    flips = torch.randint(0, 2, (2,), generator=generator).tolist()
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    dims = [d for d, f in zip((2, 3), flips, strict=True) if f]
    if dims:
        x = torch.flip(x, dims)
    return torch.rot90(x, turns, dims=(2, 3)) if turns else x


def predict(net: object, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Sigmoid probabilities ``(N, K)`` of a torch network on ``(N, 3, H, W)`` inputs."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            logits = net(torch.from_numpy(np.ascontiguousarray(x[s : s + batch_size])))
            out.append(torch.sigmoid(logits).double().numpy())
    return np.concatenate(out, axis=0)


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, object]:
    """Multi-label scores at ``threshold``.

    Returns:
        ``exact_match`` (share of cells whose predicted label set equals the truth),
        ``label_accuracy`` (share of correct (cell, class) decisions), ``macro_f1``, and per
        class ``f1``, ``precision``, ``recall`` and ``support`` (arrays in class order).
    """
    pred = probabilities > threshold
    truth = labels.astype(bool)
    tp = (pred & truth).sum(axis=0).astype(np.float64)
    fp = (pred & ~truth).sum(axis=0).astype(np.float64)
    fn = (~pred & truth).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {
        "exact_match": float((pred == truth).all(axis=1).mean()),
        "label_accuracy": float((pred == truth).mean()),
        "macro_f1": float(f1.mean()),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "support": truth.sum(axis=0),
    }


def metrics_table(metrics: dict[str, object]) -> str:
    """The per-class scores of :func:`classification_metrics` as a markdown table."""
    lines = [
        "| class | F1 | precision | recall | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    f1, precision, recall, support = (
        np.asarray(metrics[k]) for k in ("f1", "precision", "recall", "support")
    )
    for k, name in enumerate(CLASSES):
        lines.append(
            f"| {name} | {f1[k]:.3f} | {precision[k]:.3f} | {recall[k]:.3f} | {int(support[k])} |"
        )
    return "\n".join(lines)
