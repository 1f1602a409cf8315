"""`make course`: the notebooks rendered in order to a static HTML course with an index page."""
import json
import re
from pathlib import Path

import pytest

from defectlab import DefectlabError
from defectlab.course import NOTEBOOKS, build_course, lessons


def _notebook(path: Path, title: str, with_figure: bool = False) -> None:
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "fig"}}]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": [f"# {title}\n", "\n", "What it *teaches*."]},
                    {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": ["1 + 1"],
                     "outputs": outputs if with_figure else []}]}
    path.write_text(json.dumps(nb))


def test_lessons_follow_the_course_order_with_title_summary_and_figures(tmp_path):
    _notebook(tmp_path / "01_second.ipynb", "Second")
    _notebook(tmp_path / "00_first.ipynb", "First", with_figure=True)
    _notebook(tmp_path / "scratch.ipynb", "Not a lesson")
    items = lessons(tmp_path)
    assert [it["title"] for it in items] == ["First", "Second"]
    assert items[0]["summary"] == "What it *teaches*." and items[0]["figures"] == 1 and items[1]["figures"] == 0


def test_the_repository_course_renders_every_notebook_with_links_between_them(tmp_path):
    index = build_course(tmp_path / "course")
    names = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    links = re.findall(r'<li><a href="([^"]+)\.html"', index.read_text())
    assert links == names and len(names) >= 10
    first = (tmp_path / "course" / f"{names[0]}.html").read_text()
    assert f'href="{names[1]}.html"' in first and 'href="index.html"' in first  # next lesson, back to the index
    assert "<nav" in (tmp_path / "course" / f"{names[-1]}.html").read_text()


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
