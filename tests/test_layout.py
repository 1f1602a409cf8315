"""The package layout: the registry is a leaf, the catalog lists every built-in method, the CLI has its subcommands,
the detectors never import the benchmark, and no private name crosses a sub-package."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import defectlab

BUILTIN = ["adabldm", "bezier", "copypaste", "cutpaste", "cutpaste_scar", "defect_gan", "defectfill", "draem",
           "glass_global", "glass_local", "memseg", "realnet_sdas", "simplenet", "texture_gan"]


REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_importing_the_registry_imports_no_method():
    out = _run("import json, sys, defectlab.registry as r; "
               "print(json.dumps([sorted(m for m in sys.modules if m.startswith(('defectlab.synth', 'defectlab.adabldm'))), "
               "r.registered()]))")
    synth_modules, registered = json.loads(out)
    assert synth_modules == [] and registered == []


def test_the_catalog_lists_every_builtin_method_by_family():
    assert defectlab.available() == BUILTIN
    assert defectlab.available("feature") == ["glass_global", "simplenet"]
    assert defectlab.available("generative") == ["defect_gan", "defectfill", "realnet_sdas", "texture_gan"]
    assert defectlab.get("draem").__module__ == "defectlab.synth.handcrafted.draem"
    assert defectlab.create("cutpaste").name == "cutpaste"


def test_one_resize_module_reproduces_each_callers_former_resizer():
    """`defectlab.resize` keeps the exact bytes of the three former copies (PIL in imageio, cv2 in AdaBLDM's
    pairs, cv2 INTER_LINEAR for anomaly maps): each caller picks its own by parameter."""
    import cv2
    import numpy as np
    from PIL import Image

    from defectlab.resize import resize_image, resize_mask

    rng = np.random.default_rng(0)
    img = rng.random((37, 53, 3)).astype(np.float32)
    mask = rng.random((37, 53)) > 0.7
    pil = np.stack([np.asarray(Image.fromarray(img[:, :, c], mode="F").resize((20, 16), Image.BILINEAR))
                    for c in range(3)], axis=2)
    assert np.array_equal(resize_image(img, (16, 20)), np.clip(pil, 0, 1))
    assert np.array_equal(resize_image(img, 24, interpolation="area"), cv2.resize(img, (24, 24), interpolation=cv2.INTER_AREA))
    assert resize_image(img[:, :, :1], 24, interpolation="area").shape == (24, 24, 1)
    assert np.array_equal(resize_image(img[:, :, 0], 24, interpolation="linear"),
                          cv2.resize(img[:, :, 0], (24, 24), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(resize_mask(mask, (16, 20)),
                          np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((20, 16), Image.NEAREST)) > 127)
    assert np.array_equal(resize_mask(mask, 24, sampling="corner"),
                          cv2.resize(mask.astype(np.uint8), (24, 24), interpolation=cv2.INTER_NEAREST) > 0)
    thin = np.zeros((100, 100), bool)
    thin[:, 37] = True
    assert not resize_mask(thin, 10).any() and resize_mask(thin, 10, keep_thin=True).any()


def test_one_loop_one_seeding_rule():
    """`synth.batch.run_many`: item i is made from `default_rng([*seed, i])`, the good image cycled or drawn from it."""
    import numpy as np

    from defectlab.synth.batch import run_many

    goods = [np.full((8, 8, 1), v, np.float32) for v in (0.1, 0.5, 0.9)]

    def probe(image, rng, foreground=None):
        mask = np.zeros((8, 8), bool)
        mask[0, 0] = True
        return defectlab.Sample(np.full_like(image, rng.random()), mask, {"good": float(image[0, 0, 0])})

    cycled = list(run_many(probe, goods, 4, 7, show_progress=False))
    assert [j for _, j, _ in cycled] == [0, 1, 2, 0]
    assert [float(s.image[0, 0, 0]) for _, _, s in cycled] == [np.float32(np.random.default_rng([7, i]).random())
                                                               for i in range(4)]
    drawn = list(run_many(probe, goods, 3, [7, 11], pick="random", show_progress=False))
    for i, j, s in drawn:
        rng = np.random.default_rng([7, 11, i])
        assert j == int(rng.integers(3)) and s.image[0, 0, 0] == np.float32(rng.random())


def test_adabldm_steps_are_cli_subcommands(capsys, tmp_path):
    import pytest

    from defectlab.cli import main

    for step, option in (("train", "--recipe"), ("generate", "--checkpoint")):
        with pytest.raises(SystemExit) as exit_:
            main(["adabldm", step, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and out.startswith(f"usage: defectlab adabldm {step}") and option in out
    assert main(["adabldm", "train", "--threads", "-1", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("defectlab adabldm train: error: --threads must be >= 1")
    out = _run("from defectlab.cli import main; main(['adabldm', 'generate', '--help'])")
    assert "--by-type" in out


def _imports(path: Path, root: Path = REPO) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every import in a file under `root`, relative imports resolved (`name`: None for
    `import module`)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]  # a module's own package (also for an `__init__.py`: its package is itself)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, module, a.name) for a in node.names]
    return found


def _unit(module: str) -> str:
    """What a private name may not leave: `defectlab.X` for a sub-package X or a top-level module X."""
    return ".".join(module.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_detectors_never_import_the_benchmark():
    """`detect/` is below `benchmark/`: the benchmark's plumbing (`benchmark.prepare`) never comes back up."""
    bad = [f"{path.relative_to(REPO)}:{line} imports {module}{'.' + name if name else ''}"
           for path in sorted((REPO / "defectlab" / "detect").rglob("*.py"))
           for line, module, name in _imports(path)
           if any(m == "defectlab.benchmark" or m.startswith("defectlab.benchmark.")
                  for m in (module, f"{module}.{name}" if name else module))]
    assert bad == []


def test_the_domain_prior_imports_none_of_its_users():
    """`prior/` is below `adabldm/`, `detect/`, `synth/` (and the benchmark): they import it, it imports none of them;
    and `detect/` no longer reaches into AdaBLDM for its autoencoder."""
    above = ("defectlab.adabldm", "defectlab.detect", "defectlab.synth", "defectlab.benchmark")
    bad = [f"{path.relative_to(REPO)}:{line} imports {module}"
           for path in sorted((REPO / "defectlab" / "prior").rglob("*.py"))
           for line, module, name in _imports(path)
           for m in (module, f"{module}.{name}" if name else module) if m.startswith(above)]
    bad += [f"{path.relative_to(REPO)}:{line} imports {module}"
            for path in sorted((REPO / "defectlab" / "detect").rglob("*.py"))
            for line, module, _ in _imports(path) if module.startswith("defectlab.adabldm")]
    assert bad == []


def test_no_private_name_is_imported_from_another_subpackage():
    """A leading underscore means "this module's own": the library imports none across its sub-packages (or
    top-level modules), and the benchmark scripts import none of the library's."""
    bad = []
    for path in sorted((REPO / "defectlab").rglob("*.py")):
        home = _unit(".".join(path.relative_to(REPO).with_suffix("").parts))
        for line, module, name in _imports(path):
            if module.startswith("defectlab") and _unit(module) != home and (
                    any(_private(p) for p in module.split(".")) or (name and _private(name))):
                bad.append(f"{path.relative_to(REPO)}:{line} {module} {name}")
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        for line, module, name in _imports(path):
            if module.split(".")[0] == "defectlab" and (any(_private(p) for p in module.split("."))
                                                        or (name and _private(name))):
                bad.append(f"{path.relative_to(REPO)}:{line} {module} {name}")
    assert bad == []


def test_the_import_scan_sees_relative_and_private_imports(tmp_path):
    """The two tests above would catch what they guard against (a scan that finds nothing proves nothing)."""
    probe = tmp_path / "defectlab" / "detect" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ..benchmark.prepare import stable_id\nfrom ..synth.base import _x\nfrom .destseg import _y\n"
                     "from .. import benchmark\nimport defectlab.benchmark\n")
    found = _imports(probe, tmp_path)
    assert found == [(1, "defectlab.benchmark.prepare", "stable_id"), (2, "defectlab.synth.base", "_x"),
                     (3, "defectlab.detect.destseg", "_y"), (4, "defectlab", "benchmark"), (5, "defectlab.benchmark", None)]
    assert [_unit(m) for _, m, _ in found[:3]] == ["defectlab.benchmark", "defectlab.synth", "defectlab.detect"]
    assert _private("_x") and not _private("__version__") and not _private("stable_id")
