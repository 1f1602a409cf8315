"""The notebooks as a static HTML course: one page per notebook, in order, with its stored outputs (nothing is
executed), a bar to the previous lesson, the index and the next one at the top and bottom of each page, math
rendered to MathML when the site is built (no script from the network), and an index page with each lesson's
first figure and one sentence; and the full run that stores those outputs.

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
THUMB_WIDTH = 240  # px: the index page's picture of each lesson (its first figure)

# one sentence per lesson for the index, by the notebook's name without its number (so renumbering keeps them);
# a notebook not listed gets the first sentence of the first paragraph after its title
SENTENCES = {
    "quickstart": "Check the installation, open the embedded data set and synthesise a first defect in ten lines.",
    "data_and_masks": "Read the public defect data sets, keep a few-shot split honest, and draw every kind of mask "
                      "the synthesis methods build on.",
    "handcrafted_synthesis": "Seven hand-crafted methods, from CutPaste to copy-paste of real defects: what each "
                             "draws, its published parameters and where it fails.",
    "distribution_hypothesis": "SimpleNet and GLASS make anomalies in feature space, not in pixels: where those "
                               "features sit beside real defects.",
    "generative_models": "Four learned synthesizers, GANs and diffusion models trained from scratch, and what they "
                         "paint after minutes on a CPU.",
    "adabldm": "AdaBLDM's blended latent diffusion and online decoder adaptation, stage by stage, on a trained "
               "offline checkpoint.",
    "quality_metrics": "FID, KID, IS and IC-LPIPS offline, where each misleads, and whether any predicts which "
                       "method trains the better detector.",
    "downstream_detection": "The downstream protocol: train a detector on synthetic defects, test it on held-out "
                            "real ones, beside the baselines every result needs.",
    "reconstruction_detection": "DiAD reconstructs an image as a model of good images would have it; compared with "
                                "PatchCore's memory bank of good patches.",
    "report": "From a benchmark run to the tables, figures and exported report of a paper or a slide.",
}


def lessons(folder: str | Path = NOTEBOOKS) -> list[dict]:
    """The notebooks of `folder` in course order (`NN_name.ipynb`): file, page name, title (the first
    heading), summary (one sentence: `SENTENCES`, else the first of the paragraph after the title), how many
    figures its stored outputs hold and the first of them (base64 PNG, or None)."""
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
        sentence = SENTENCES.get(path.stem[3:]) or re.split(r"(?<=[.!?])\s", para, maxsplit=1)[0]
        pngs = [o["data"]["image/png"] for c in nb.get("cells", []) for o in c.get("outputs", [])
                if "image/png" in o.get("data", {})]
        out.append({"file": path, "page": path.stem + ".html", "title": heading.group(1).strip() if heading else path.stem,
                    "summary": sentence, "figures": len(pngs),
                    "thumbnail": "".join(pngs[0]) if pngs else None})
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


NAV_STYLE = ("font:14px sans-serif;padding:8px 16px;display:flex;gap:24px;justify-content:space-between;"
             "background:#f6f8fa;border-{edge}:1px solid #ccc")


def _nav(items: list[dict], i: int, edge: str = "bottom") -> str:
    """The bar to the previous lesson, the index and the next lesson (`edge`: where its border is drawn)."""
    prev = (f'<a href="{items[i - 1]["page"]}">&larr; {html.escape(items[i - 1]["title"])}</a>' if i > 0
            else "<span></span>")
    nxt = (f'<a href="{items[i + 1]["page"]}">{html.escape(items[i + 1]["title"])} &rarr;</a>' if i + 1 < len(items)
           else "<span></span>")
    return (f'<nav class="defectlab-course" style="{NAV_STYLE.format(edge=edge)}">{prev}'
            f'<a href="index.html">course index</a>{nxt}</nav>')


INDEX_STYLE = """
body { font: 15px/1.45 sans-serif; max-width: 62em; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
ol.lessons { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(18em, 1fr));
             gap: 1.2em; }
ol.lessons li { border: 1px solid #ddd; border-radius: 6px; padding: .8em; background: #fafafa; }
ol.lessons li > a { font-weight: bold; text-decoration: none; color: #0b5394; }
ol.lessons img { display: block; width: 100%; height: 9em; object-fit: contain; background: #fff;
                 margin-bottom: .6em; border-radius: 4px; }
ol.lessons p { margin: .4em 0; }
ol.lessons small { color: #666; }
"""


def _index(items: list[dict]) -> str:
    rows = []
    for it in items:
        thumb = (f'<a href="{it["page"]}"><img src="thumbs/{it["file"].stem}.png" alt="first figure of '
                 f'{html.escape(it["title"])}"></a>' if it["thumbnail"] else "")
        rows.append(f'<li>{thumb}<a class="lesson" href="{it["page"]}">{html.escape(it["title"])}</a>'
                    f'<p>{html.escape(it["summary"])}</p><small>{plural(it["figures"], "figure")}</small></li>')
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>defectlab course</title>"
            f"<style>{INDEX_STYLE}</style></head><body><h1>defectlab: industrial defect synthesis, a course in "
            "notebooks</h1><p>Each lesson is a notebook rendered with the outputs of its last full run; the "
            "interactive cells show a static grid over their parameter. Run the notebooks yourself with JupyterLab "
            f"(see the README).</p><ol class='lessons'>{''.join(rows)}</ol></body></html>")


def _thumbnail(png_b64: str) -> bytes:
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH / image.width))), Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)  # fenced blocks and code spans: never math
MATH = re.compile(r"(?<![\\$])\$\$(.+?)\$\$|(?<![\\$])\$(?=\S)([^$\n]+?)(?<=\S)\$", re.S)


def render_math(markdown: str, where: str = "") -> str:
    """`$…$` and `$$…$$` of a Markdown text (outside code) replaced by MathML, which browsers render natively:
    the course needs no math script from the network. A formula latex2mathml cannot read raises, naming it."""
    from latex2mathml.converter import convert

    def one(m: re.Match) -> str:
        display, tex = (m.group(1) is not None), (m.group(1) if m.group(1) is not None else m.group(2))
        try:
            return convert(tex.strip(), display="block" if display else "inline")
        except Exception as exc:  # noqa: BLE001 - latex2mathml raises many types
            raise DefectlabError(f"{where}: cannot render the formula ${tex}$ ({exc})") from exc

    parts = CODE.split(markdown)
    return "".join(p if k % 2 else MATH.sub(one, p) for k, p in enumerate(parts))


IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\s*\))|(<img\b[^>]*\bsrc=[\"'])([^\"']+)([\"'])")


def _local_images(markdown: str, folder: Path, stage: Path, where: str) -> str:
    """Relative image links of a Markdown text (`../docs/x.png`) copied into the site's `assets/` and pointed
    there: the site is a folder of its own, and `../docs` would not resolve from it. A missing file raises."""
    import shutil

    def one(m: re.Match) -> str:
        head, link, tail = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        if re.match(r"[a-z][a-z0-9+.-]*:", link, re.I) or link.startswith(("/", "#")):
            return m.group(0)  # a URL, data:, attachment: or an absolute link: left as written
        source = (folder / link).resolve()
        if not source.is_file():
            raise DefectlabError(f"{where}: image {link} not found ({source.name} is not beside the notebooks)")
        base = folder.resolve().parent
        name = source.relative_to(base).as_posix() if source.is_relative_to(base) else source.name
        target = stage / "assets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return f"{head}assets/{name}{tail}"

    return IMAGE_LINK.sub(one, markdown)


def page_notebook(path: Path, stage: Path):
    """The notebook as the site shows it: math pre-rendered (Markdown cells and Markdown outputs), local images
    copied into the site."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        where = f"{path.name}, cell {i}"
        if cell.cell_type == "markdown":
            cell.source = render_math(_local_images(cell.source, path.parent, stage, where), where)
        for out in cell.get("outputs", []):
            if "text/markdown" in out.get("data", {}):
                text = out["data"]["text/markdown"]
                out["data"]["text/markdown"] = render_math("".join(text) if isinstance(text, list) else text, where)
    return nb


# what nbconvert's lab template loads from the network: require.js and MathJax (math is MathML here)
REMOTE_SCRIPTS = (re.compile(r'<script src="https://[^"]*require[^"]*"></script>\s*'),
                  re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S))


def build_course(out: str | Path, folder: str | Path = NOTEBOOKS, overwrite: bool = False) -> Path:
    """Render every notebook of `folder` to `out` (written whole or not at all; an existing `out` is replaced
    only with `overwrite`, and only if it holds nothing but an earlier course). Each page has the bar to the
    previous lesson, the index and the next one at its top and bottom; math is MathML, images the notebooks link
    to are copied in (`assets/`), nothing is loaded from the network. Returns the index page."""
    from nbconvert import HTMLExporter

    folder = Path(folder)
    items = lessons(folder)
    exporter = HTMLExporter(template_name="lab")
    with staged_folder(out, overwrite, owner=OWNER) as stage:
        for i, it in enumerate(items):
            body, _ = exporter.from_notebook_node(page_notebook(it["file"], stage),
                                                  resources={"metadata": {"name": it["file"].stem, "path": str(folder)}})
            for pattern in REMOTE_SCRIPTS:
                body = pattern.sub("", body)
            body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _nav(items, i, "bottom"), body, count=1)
            body = body.replace("</body>", _nav(items, i, "top") + "</body>", 1)
            (stage / it["page"]).write_text(body, encoding="utf-8")
            if it["thumbnail"]:
                (stage / "thumbs").mkdir(exist_ok=True)
                (stage / "thumbs" / f"{it['file'].stem}.png").write_bytes(_thumbnail(it["thumbnail"]))
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
