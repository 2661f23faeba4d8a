"""The example notebook runs headless from top to bottom, and its own checks pass."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "explain_a_photo.ipynb"


@pytest.mark.slow
def test_example_notebook_runs_and_checks_itself(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # The one-call explanation and the Result both show inline: words and the panel.
    assert any("completeness within" in h and "data:image/png;base64," in h for h in html)
    assert len(html) >= 2
    text = "".join(o.get("text", "") for o in outputs)
    assert "Egyptian cat 285 rank 1" in text
