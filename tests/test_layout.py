"""The package layout: the registry is a leaf, the catalog lists every built-in method, the CLI has its subcommands."""
import json
import subprocess
import sys

import defectlab

BUILTIN = ["adabldm", "bezier", "copypaste", "cutpaste", "cutpaste_scar", "defect_gan", "defectfill", "draem",
           "glass_global", "glass_local", "memseg", "realnet_sdas", "simplenet", "texture_gan"]


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
