"""Static HTML reports of igkit outputs (``igkit report``); see :mod:`igkit.report.build`."""

from __future__ import annotations

from igkit.report.build import build_report, embed_json

__all__ = ["build_report", "embed_json"]
