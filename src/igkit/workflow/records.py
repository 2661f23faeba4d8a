"""What one explanation's files hold: its ``summary.csv`` row and its npz fields.

Photos and multi-channel examples keep their own column sets and npz keys, as the command line
has always written them; the numbers of both come from the same single-target Result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.workflow.explainer import Explainer, Explanation, TargetExplanation

if TYPE_CHECKING:
    from igkit.core.result import Result

__all__ = ["CHANNEL_SUMMARY_FIELDS", "PHOTO_SUMMARY_FIELDS", "npz_fields", "summary_row"]

#: Columns of ``summary.csv`` for photos, one row per image, target and variant.
PHOTO_SUMMARY_FIELDS: tuple[str, ...] = (
    "image", "name", "model", "target", "label", "rank", "score", "baseline_score", "delta",
    "relative_error", "error_estimate", "completeness", "steps", "evaluations", "method",
    "baseline", "output", "tol", "seconds", "npz", "png", "variant",
)  # fmt: skip
#: Columns of ``summary.csv`` for multi-channel examples, one row per example and target.
CHANNEL_SUMMARY_FIELDS: tuple[str, ...] = (
    "example", "source", "model", "target", "label", "score", "predicted", "baseline_score",
    "delta", "relative_error", "error_estimate", "completeness", "steps", "evaluations",
    "method", "baseline", "output", "tol", "seconds", "npz", "png",
)  # fmt: skip


def summary_row(
    ex: Explainer, explanation: Explanation, te: TargetExplanation, npz: str
) -> dict[str, Any]:
    """One ``summary.csv`` row (:data:`PHOTO_SUMMARY_FIELDS` or
    :data:`CHANNEL_SUMMARY_FIELDS`); ``png`` is filled in by the writer."""
    r = te.result
    item = explanation.prediction.input
    numbers = {
        "model": ex.model.name,
        "target": te.target,
        "label": te.label,
        "score": f"{r.score[0]:.6g}",
        "baseline_score": f"{r.baseline_score[0]:.6g}",
        "delta": f"{r.delta[0]:.6g}",
        "relative_error": f"{r.relative_error[0]:.6g}",
        "error_estimate": ("" if r.error_estimate is None
                           else f"{float(r.error_estimate[0]):.6g}"),
        "completeness": _verdict(r),
        "steps": int(r.steps[0]),
        "evaluations": int(r.evaluations[0]),
        "method": r.method,
        "baseline": ex.baseline_text,
        "output": ex.output,
        "tol": r.tol,
        "seconds": f"{te.seconds:.3f}",
        "npz": npz,
        "png": "",
    }
    if ex.settings.multichannel:
        return {
            "example": item.name,
            "source": item.where,
            **numbers,
            "predicted": te.target in explanation.prediction.choice.predicted,
        }
    return {"image": item.where, "name": item.name, "rank": te.rank, **numbers,
            "variant": te.variant.name}

def npz_fields(
    ex: Explainer,
    explanation: Explanation,
    te: TargetExplanation,
    variant: str | None = None,
) -> dict[str, Any]:
    """The plain arrays of one explanation's npz file (``allow_pickle=False`` reads it)."""
    import igkit

    s, r = ex.settings, te.result
    item = explanation.prediction.input
    common = {
        "attributions": te.attributions,
        "baseline_image": te.baseline,
        "model": ex.model.name,
        "model_description": ex.model.description,
        **r.numbers(0),
        "target": te.target,
        "target_label": te.label,
        "completeness": r.completeness_report(0),
        "requested_steps": str(s.steps),
        "method": r.method,
        "baseline": ex.baseline_text,
        "tol": r.tol,
        "output": ex.output,
        "seed": s.seed,
        "batch_size": s.batch_size,
        "seconds": te.seconds,
        "igkit_version": igkit.__version__,
    }
    if s.multichannel:
        scores = explanation.prediction.scores
        fields = {
            **common,
            "image": explanation.prediction.image.astype(np.float32),
            "model_input": te.variant.pixels.astype(np.float32),
            "channels": np.asarray(ex.channels, dtype=str),
            "model_channels": np.asarray(ex.model_channels, dtype=str),
            "sources": np.asarray(item.sources, dtype=str),
            "example": item.name,
            "threshold": float(s.threshold),
            "scores": scores,
            "predicted": np.asarray(explanation.prediction.choice.predicted, dtype=np.int64),
            "labels": np.asarray([ex.label(k) for k in range(scores.shape[0])], dtype=str),
        }
    else:
        scores = te.variant.scores
        top = np.argsort(-scores, kind="stable")[: min(s.top_k, len(scores))]
        fields = {
            **common,
            "image": te.variant.pixels.astype(np.float32),
            "source": item.where,
            "framework": ex.model.framework,
            "baselines": np.asarray(r.baselines, dtype=str),
            "preprocess": ex.preprocess,
            "input_size": np.asarray(ex.model.input_size, dtype=np.int64),
            "top_k_indices": np.asarray(top, dtype=np.int64),
            "top_k_scores": scores[top],
            "top_k_labels": np.asarray([ex.label(int(i)) for i in top], dtype=str),
        }
        if variant is not None:
            fields["variant"] = variant
    return fields


def _verdict(result: Result) -> str:
    """The completeness column: within, NOT within, nothing to attribute (F(x) = F(x')), or
    not claimed (a method without completeness)."""
    if not result.complete:
        return "not claimed"
    if result.nothing_to_attribute[0]:
        return "nothing to attribute"
    return "within" if result.converged[0] else "NOT within"
