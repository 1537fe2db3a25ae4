"""davs/ is the library: it never imports pipeline, prefect, dvc or dvclive, nor reads params.yaml."""

import ast
import subprocess
import sys

from .conftest import ROOT

FORBIDDEN = ("pipeline", "prefect", "dvc", "dvclive")


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_davs_source_never_imports_the_orchestration_layer():
    files = sorted((ROOT / "davs").rglob("*.py"))
    assert len(files) > 20
    for f in files:
        bad = _imports(f) & set(FORBIDDEN)
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
        assert "params.yaml" not in f.read_text(), f"{f.relative_to(ROOT)} mentions params.yaml"


def test_importing_every_davs_module_loads_none_of_them():
    code = (
        "import importlib, pkgutil, sys, davs\n"
        "for m in pkgutil.walk_packages(davs.__path__, 'davs.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(bad); assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr + r.stdout


JUDGED = ["davs.evaluation", "davs.inference", "davs.judges.scores", "davs.judges.train", "pipeline.evaluate:evaluate",
          "pipeline.generate:run"]


def test_evaluation_and_inference_never_import_training():
    """What judges or uses a model (evaluation, the judges, ``davs generate``) shares no code with the trainer,
    so a change in training can never change how its results are measured; checked on the static import
    closure (function-level imports included) and at run time."""
    from davs.provenance import import_closure

    for entry in JUDGED:
        bad = [str(f) for f in import_closure([entry]) if f.parts[:2] == ("davs", "training")]
        assert not bad, f"{entry} imports training code: {bad}"
    code = ("import sys, davs.evaluation, davs.inference, davs.judges.scores, davs.judges.train, pipeline.evaluate\n"
            "bad = [m for m in sys.modules if m.startswith('davs.training')]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr + r.stdout
