"""Every notebook in notebooks/ runs top to bottom on the shipped data, and its numbers hold."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(path: Path) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


@pytest.mark.slow
def test_walkthrough_runs_and_reports_accuracy():
    nb = run_notebook(NOTEBOOKS / "walkthrough.ipynb")
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "NCHW->NHWC" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("INT8 accuracy on 600 images"))
    accuracy = float(line.split(":")[1].split("%")[0])
    # the FP32 model scores 92.33 % on this subset (edgeopt/assets/README.md); INT8 stays within 1 point
    assert accuracy >= 91.3
    assert "edgetpu  " in text
