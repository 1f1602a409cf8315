"""The notebooks as a static HTML course: one page per notebook, in order, with its stored outputs (nothing is
executed), a bar to the previous / next lesson, and an index page; and the full run that stores those outputs.

    python -m defectlab.course --out outputs/course          (make course)
    python -m defectlab.course --run notebooks/*.ipynb       (make notebooks: full mode, outputs stored in place)
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


def run_notebook(path: str | Path, timeout: float = 3600) -> float:
    """Execute a notebook top to bottom in a fresh kernel (in the caller's environment: unset DEFECTLAB_QUICK for the
    full run), store each cell's outputs as a static page shows them (`slim`), write it back atomically; a cell
    that raises stops the run, names the cell and leaves the file as it was. Returns the seconds it took.

    Messages are collected as nbval does (widget comms are not emulated), so an `@interact` cell ends with the
    figure of its default values like any other cell."""
    import queue
    import time

    import nbformat
    from jupyter_client.manager import start_new_kernel

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(path.parent.resolve()), startup_timeout=300)
    t0 = time.time()
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                try:
                    cell.outputs, cell.execution_count = _execute(kc, cell.source, timeout)
                except queue.Empty:
                    raise DefectlabError(f"{path}: cell {i} sent nothing for {timeout:.0f} s (timeout)") from None
                errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                if errors:
                    raise DefectlabError(f"{path}: cell {i} raised {errors[0]['ename']}: {errors[0]['evalue']}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    from .imageio import atomic_write_bytes

    atomic_write_bytes(path, (nbformat.writes(slim(nb)) + "\n").encode())
    return time.time() - t0


def _execute(kc, source: str, timeout: float) -> tuple[list, int | None]:
    import nbformat

    msg_id, outputs, count = kc.execute(source, store_history=True), [], None
    interact = False  # an @interact cell (`slim` keeps only its text); other widgets (progress bars) are dropped here
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs, count
        if kind == "execute_input":
            count = content.get("execution_count")
        elif kind == "clear_output":
            outputs = []
        elif kind == "stream":
            if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1]["name"] == content["name"]:
                outputs[-1]["text"] += content["text"]
            else:
                outputs.append(nbformat.v4.new_output("stream", name=content["name"], text=content["text"]))
        elif kind == "comm_open":
            state = content.get("data", {}).get("state", {})
            interact = interact or "widget-interact" in (state.get("_dom_classes") or ())
        elif kind in ("display_data", "execute_result"):
            if WIDGET_VIEW in content["data"] and not interact:
                continue  # a progress bar: nothing to see on a static page, and it must not hide the cell's figure
            out = nbformat.v4.new_output(kind, data=content["data"], metadata=content.get("metadata", {}))
            if kind == "execute_result":
                out["execution_count"] = content["execution_count"]
            outputs.append(out)
        elif kind == "error":
            outputs.append(nbformat.v4.new_output("error", ename=content["ename"], evalue=content["evalue"],
                                                  traceback=content["traceback"]))


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def slim(nb, max_width: int = 800):
    """A notebook's outputs as a static page can show them, kept small: the displays of a cell that shows a widget
    (nothing to see without a kernel; its figure at the default values is the previous cell's) and the saved
    widget state dropped; PNG figures wider than `max_width` px scaled down, every PNG re-encoded with a
    256-colour palette (median cut, no dithering) and PNG's optimiser."""
    import base64
    import io

    from PIL import Image

    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if any(WIDGET_VIEW in out.get("data", {}) for out in cell.outputs):
            # a widget needs a kernel; what it drew at its defaults is the figure of the cell before it
            cell.outputs = [out for out in cell.outputs if out.get("output_type") == "stream"]
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if "image/png" in data:
                image = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
                if image.width > max_width:
                    image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
                buf = io.BytesIO()  # a 256-colour palette halves photo-like grids; plots lose nothing visible
                image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
                    .save(buf, format="PNG", optimize=True)
                data["image/png"] = base64.b64encode(buf.getvalue()).decode()
                out.get("metadata", {}).pop("image/png", None)  # a stale width / height would distort it
            kept.append(out)
        cell.outputs = kept
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectlab.course", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/course", help="output folder (default outputs/course)")
    p.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of NN_name.ipynb notebooks")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier course in --out")
    p.add_argument("--run", nargs="+", metavar="NOTEBOOK", help="execute these notebooks and store their outputs "
                   "in place instead (full mode unless DEFECTLAB_QUICK=1 is set)")
    args = p.parse_args(argv)
    try:
        if args.run:
            for path in args.run:
                print(f"{path}: ran in {run_notebook(path):.0f} s", flush=True)
            return 0
        index = build_course(args.out, args.notebooks, args.overwrite)
    except DefectlabError as exc:
        p.exit(2, f"python -m defectlab.course: error: {exc}\n")
    print(f"course written: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
