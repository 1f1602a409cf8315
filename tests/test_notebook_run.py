"""`make notebooks`: a notebook executed top to bottom, its outputs stored as a static page shows them."""
import json

import pytest

from defectlab import DefectlabError
from defectlab.course import run_notebook


def _write(path, cells):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": src} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb))


def test_outputs_are_stored_figures_kept_and_widgets_dropped(tmp_path):
    path = tmp_path / "00_lesson.ipynb"
    _write(path, ["print('hello')",
                  "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                  "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(12, 2), dpi=100)\nax.plot([0, 1])\nplt.show()",
                  "from ipywidgets import interact\n@interact(x=(0, 3))\ndef f(x=1):\n    print('x is', x)",
                  "1 + 1",
                  # a progress bar (tqdm's notebook widget) in a cell that also draws: the figure must stay
                  "from defectlab.progress import progress\nfor _ in progress(range(3), desc='work'):\n    pass\n"
                  "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 0])\nplt.show()"])
    run_notebook(path)
    cells = json.loads(path.read_text())["cells"]
    text = lambda v: "".join(v) if isinstance(v, list) else v  # noqa: E731  (nbformat stores lines)
    assert text(cells[0]["outputs"][0]["text"]) == "hello\n" and cells[0]["execution_count"] == 1
    png = [o for o in cells[1]["outputs"] if "image/png" in o.get("data", {})]
    assert len(png) == 1
    import base64
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(png[0]["data"]["image/png"]))).width <= 800  # 1200 px scaled down
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cells[2]["outputs"])
    assert text(cells[3]["outputs"][0]["data"]["text/plain"]) == "2"
    assert [o["output_type"] for o in cells[4]["outputs"] if "image/png" in o.get("data", {})] == ["display_data"]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cells[4]["outputs"])


def test_a_failing_cell_is_named_and_the_notebook_left_as_it_was(tmp_path):
    path = tmp_path / "01_broken.ipynb"
    _write(path, ["x = 1", "raise ValueError('no such defect')"])
    before = path.read_bytes()
    with pytest.raises(DefectlabError, match=r"01_broken.ipynb: cell 1 raised ValueError: no such defect"):
        run_notebook(path)
    assert path.read_bytes() == before


def test_a_silent_cell_past_the_timeout_is_named(tmp_path):
    path = tmp_path / "02_slow.ipynb"
    _write(path, ["import time\ntime.sleep(5)"])
    with pytest.raises(DefectlabError, match=r"02_slow.ipynb: cell 0 sent nothing for 1 s"):
        run_notebook(path, timeout=1)
