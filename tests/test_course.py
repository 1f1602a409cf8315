"""`make course`: the notebooks rendered in order to a static HTML course with an index page."""
import json
import re
from pathlib import Path

import pytest

from defectlab import DefectlabError
from defectlab.course import NOTEBOOKS, build_course, lessons


def _png(width: int = 400, height: int = 100) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _notebook(path: Path, title: str, with_figure: bool = False, markdown: str = "") -> None:
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {"image/png": _png(), "text/plain": "fig"}}]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "id": "a", "metadata": {},
                     "source": [f"# {title}\n", "\n", "What it *teaches*. And more."]},
                    {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": ["1 + 1"],
                     "outputs": outputs if with_figure else []},
                    {"cell_type": "markdown", "id": "c", "metadata": {}, "source": [markdown]}]}
    path.write_text(json.dumps(nb))


def test_lessons_follow_the_course_order_with_title_summary_and_figures(tmp_path):
    _notebook(tmp_path / "01_second.ipynb", "Second")
    _notebook(tmp_path / "00_first.ipynb", "First", with_figure=True)
    _notebook(tmp_path / "scratch.ipynb", "Not a lesson")
    items = lessons(tmp_path)
    assert [it["title"] for it in items] == ["First", "Second"]
    assert items[0]["summary"] == "What it *teaches*." and items[0]["figures"] == 1 and items[1]["figures"] == 0
    assert items[0]["thumbnail"] == _png() and items[1]["thumbnail"] is None  # the first figure, for the index


def test_the_repository_course_renders_every_notebook_with_links_between_them(tmp_path):
    index = build_course(tmp_path / "course")
    names = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    links = re.findall(r'<a class="lesson" href="([^"]+)\.html"', index.read_text())
    assert links == names and len(names) >= 10
    first = (tmp_path / "course" / f"{names[0]}.html").read_text()
    assert f'href="{names[1]}.html"' in first and 'href="index.html"' in first  # next lesson, back to the index
    assert "<nav" in (tmp_path / "course" / f"{names[-1]}.html").read_text()
    for name in names:  # the bar at the top and at the bottom of every page; no script from the network
        page = (tmp_path / "course" / f"{name}.html").read_text()
        assert page.count('<nav class="defectlab-course"') == 2 and 'href="index.html">course index' in page
        assert "mathjax" not in page.lower() and "require.min.js" not in page
    for it in lessons():  # one sentence each from the course's table, and the lesson's first figure
        assert it["summary"].endswith(".") and it["summary"].count(". ") == 0 and it["figures"] >= 1, it["title"]
        assert (tmp_path / "course" / "thumbs" / f"{it['file'].stem}.png").is_file()


def test_index_pages_math_and_linked_images_need_nothing_outside_the_site(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plot.png").write_bytes(__import__("base64").b64decode(_png(20, 10)))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "00_first.ipynb", "00 · First", with_figure=True,
              markdown="FID $\\lVert\\mu_r-\\mu_g\\rVert^2$, and $$k(x,y)=(x\\cdot y/d+1)^3$$ but not `$HOME` "
                       "nor \\$5.\n\n![a plot](../docs/plot.png)")
    _notebook(notebooks / "01_second.ipynb", "01 · Second")
    index = build_course(tmp_path / "site", notebooks)
    text = index.read_text()
    assert "1 figure<" in text and "0 figures<" in text and "(1 figures)" not in text
    assert 'src="thumbs/00_first.png"' in text and "What it *teaches*." in text.replace("&#x27;", "'")
    first = (tmp_path / "site" / "00_first.html").read_text()
    assert first.count("<math") == 2 and 'display="block"' in first and "$HOME" in first
    assert 'src="assets/docs/plot.png"' in first and (tmp_path / "site" / "assets" / "docs" / "plot.png").is_file()
    assert first.index('href="01_second.html"') < first.index("What it") < first.rindex('href="01_second.html"')
    build_course(tmp_path / "site", notebooks, overwrite=True)  # its own thumbs/ and assets/ are replaced
    _notebook(notebooks / "02_broken.ipynb", "02 · Broken", markdown="![gone](../docs/missing.png)")
    with pytest.raises(DefectlabError, match=r"02_broken.ipynb, cell 2: image ../docs/missing.png not found"):
        build_course(tmp_path / "other", notebooks)
    _notebook(notebooks / "02_broken.ipynb", "02 · Broken", markdown="$\\frac{1}{$")
    with pytest.raises(DefectlabError, match=r"02_broken.ipynb, cell 2: cannot render the formula"):
        build_course(tmp_path / "other", notebooks)


def test_an_existing_course_is_replaced_only_when_asked_and_bad_input_is_named(tmp_path):
    _notebook(tmp_path / "00_only.ipynb", "Only")
    out = tmp_path / "course"
    build_course(out, tmp_path)
    with pytest.raises(DefectlabError, match="already exists"):
        build_course(out, tmp_path)
    build_course(out, tmp_path, overwrite=True)
    (tmp_path / "01_broken.ipynb").write_text("{not json")
    with pytest.raises(DefectlabError, match="01_broken.ipynb"):
        lessons(tmp_path)
    with pytest.raises(DefectlabError, match="no notebooks"):
        lessons(tmp_path / "empty")


def test_paths_are_shown_without_the_machines_folders(monkeypatch):
    import tempfile

    from defectlab.config import CHECKOUT, shown_path

    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/no-such-home/someone")))
    assert shown_path(CHECKOUT / "data" / "cache" / "embedded_s0_128") == "data/cache/embedded_s0_128"
    assert shown_path(Path(tempfile.gettempdir()) / "run" / "report.md") == "$TMPDIR/run/report.md"
    assert shown_path("/no-such-home/someone/.cache/defectlab/adabldm") == "~/.cache/defectlab/adabldm"
    assert shown_path("../shared/datasets/magnetic_tile") == "../shared/datasets/magnetic_tile"  # relative: as given
    assert shown_path("/srv/data/mvtec") == "/srv/data/mvtec"  # elsewhere: the reader's own data, as given
