"""The notebooks as a static HTML course: one page per notebook, in order, with its stored outputs (nothing is
executed), a bar to the previous / next lesson, and an index page.

    python -m defectlab.course --out outputs/course          (make course)
"""
from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

from .errors import DefectlabError
from .staging import staged_folder

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
OWNER = ".course-files.json"


def lessons(folder: str | Path = NOTEBOOKS) -> list[dict]:
    """The notebooks of `folder` in course order (`NN_name.ipynb`): file, page name, title (the first
    heading), summary (the first paragraph after it) and how many figures its stored outputs hold."""
    folder = Path(folder)
    found = sorted(p for p in folder.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not found:
        raise DefectlabError(f"{folder}: no notebooks named NN_name.ipynb")
    out = []
    for path in found:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DefectlabError(f"{path}: not a readable notebook ({exc})") from exc
        text = "".join("".join(c["source"]) + "\n\n" for c in nb.get("cells", []) if c.get("cell_type") == "markdown")
        heading = re.search(r"^#+\s*(.+)$", text, re.M)
        rest = text[heading.end():] if heading else text
        para = next((p.strip() for p in re.split(r"\n\s*\n", rest) if p.strip() and not p.lstrip().startswith("#")), "")
        figures = sum(1 for c in nb.get("cells", []) for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        out.append({"file": path, "page": path.stem + ".html", "title": heading.group(1).strip() if heading else path.stem,
                    "summary": para, "figures": figures})
    return out


def _nav(items: list[dict], i: int) -> str:
    links = ['<a href="index.html">course index</a>']
    if i > 0:
        links.insert(0, f'<a href="{items[i - 1]["page"]}">&larr; {html.escape(items[i - 1]["title"])}</a>')
    if i + 1 < len(items):
        links.append(f'<a href="{items[i + 1]["page"]}">{html.escape(items[i + 1]["title"])} &rarr;</a>')
    return ('<nav class="defectlab-course" style="font:14px sans-serif;padding:8px 16px;border-bottom:1px solid #ccc;'
            'display:flex;gap:24px">' + "".join(links) + "</nav>")


def _index(items: list[dict]) -> str:
    import mistune  # nbconvert's Markdown renderer

    rows = "".join(f'<li><a href="{it["page"]}">{html.escape(it["title"])}</a> <small>({it["figures"]} figures)</small>'
                   f'{mistune.html(it["summary"])}</li>' for it in items)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>defectlab course</title></head>"
            "<body style='font:15px sans-serif;max-width:60em;margin:2em auto'><h1>defectlab: industrial defect "
            "synthesis, a course in notebooks</h1><p>Each lesson is a notebook rendered with the outputs of its "
            f"last full run. Run them yourself with JupyterLab (see the README).</p><ol>{rows}</ol></body></html>")


def build_course(out: str | Path, folder: str | Path = NOTEBOOKS, overwrite: bool = False) -> Path:
    """Render every notebook of `folder` to `out` (written whole or not at all; an existing `out` is replaced
    only with `overwrite`, and only if it holds nothing but an earlier course). Returns the index page."""
    from nbconvert import HTMLExporter

    items = lessons(folder)
    exporter = HTMLExporter(template_name="lab")
    with staged_folder(out, overwrite, owner=OWNER) as stage:
        for i, it in enumerate(items):
            body, _ = exporter.from_filename(str(it["file"]))
            body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _nav(items, i), body, count=1)
            (stage / it["page"]).write_text(body, encoding="utf-8")
        (stage / "index.html").write_text(_index(items), encoding="utf-8")
    return Path(out) / "index.html"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectlab.course", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/course", help="output folder (default outputs/course)")
    p.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of NN_name.ipynb notebooks")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier course in --out")
    args = p.parse_args(argv)
    try:
        index = build_course(args.out, args.notebooks, args.overwrite)
    except DefectlabError as exc:
        p.exit(2, f"python -m defectlab.course: error: {exc}\n")
    print(f"course written: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
