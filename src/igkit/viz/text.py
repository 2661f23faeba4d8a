"""Text attributions shown as tokens highlighted in an HTML snippet.

A text model is explained at its token embeddings (``igkit.attribute(..., method=
"layer_integrated_gradients", layer=<the embedding module>)``): the attributions have the
layer's shape ``(tokens, embedding)``, and a token's share of the score is the sum over its
embedding (``token_scores``), so the tokens' shares add up to the score's change from the
baseline. ``token_html`` draws them as inline HTML (a notebook's ``IPython.display.HTML``, a
report page): green for tokens that raise the score, red for those that lower it, the opacity
proportional to the share, the exact number in each token's tooltip. NumPy and the standard
library only.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

__all__ = ["token_html", "token_scores"]

_POSITIVE = (22, 150, 60)  # green: raises the score
_NEGATIVE = (200, 40, 40)  # red: lowers it


def token_scores(attributions: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Each token's share of the score: the attributions ``(tokens, embedding)`` summed over
    the embedding axis (``axis``), as float64."""
    attr = np.asarray(attributions, dtype=np.float64)
    if attr.ndim < 2:
        raise ValueError(
            f"attributions of shape {attr.shape} have no embedding axis to sum over; pass the "
            "(tokens, embedding) attributions of one text"
        )
    return attr.sum(axis=axis)


def token_html(
    tokens: Sequence[str],
    scores: np.ndarray | Sequence[float],
    *,
    scale: float | None = None,
    title: str | None = None,
    digits: int = 4,
) -> str:
    """An HTML snippet of ``tokens`` highlighted by ``scores``.

    Args:
        tokens: The tokens as the tokenizer gives them; WordPiece continuations (``"##ing"``)
            are drawn joined to the token before them, and every token is HTML-escaped.
        scores: One number per token (e.g. ``token_scores(result.attributions)``).
        scale: The |score| drawn fully opaque; None takes the largest |score|, so the
            strongest token is fully coloured.
        title: A caption above the tokens (escaped), e.g. what score was explained.
        digits: Significant digits of the numbers in the tooltips.

    Returns:
        A ``<div>`` holding one ``<span>`` per token, with the token's score in ``data-score``
        and its tooltip.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {values.shape[0]} scores; pass one per token")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores contain NaN or Inf; nothing can be drawn from them")
    top = float(np.max(np.abs(values))) if values.size else 0.0
    scale = top if scale is None else float(scale)
    if not scale > 0:
        scale = 1.0  # every score is 0: draw the tokens uncoloured
    parts = []
    for i, (token, value) in enumerate(zip(tokens, values, strict=True)):
        text = str(token)
        glued = text.startswith("##") and i > 0
        if glued:
            text = text[2:]
        r, g, b = _POSITIVE if value >= 0 else _NEGATIVE
        alpha = min(1.0, abs(value) / scale)
        number = f"{value:.{digits}g}"
        parts.append(
            ("" if glued or i == 0 else " ")
            + f'<span class="igkit-token" data-score="{number}" title="{number}" '
            f'style="background:rgba({r},{g},{b},{alpha:.3f});padding:1px 2px;'
            f'border-radius:3px">{html.escape(text)}</span>'
        )
    caption = (
        f'<div style="font-size:0.85em;color:#555">{html.escape(title)}</div>' if title else ""
    )
    return (
        '<div class="igkit-text" style="font-family:sans-serif;line-height:1.9">'
        + caption + "".join(parts) + "</div>"
    )
