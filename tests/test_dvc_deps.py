"""dvc.yaml's code deps are the import closure of each stage's entry point (davs/provenance.py): a stage
reruns when, and only when, code it runs changes. Drift either way fails with the exact fix."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from davs.provenance import import_closure
from pipeline.cli import COMMANDS

from .conftest import ROOT

CODE = ("davs", "pipeline")


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_entries(cmd: str) -> list[str]:
    """``davs train joint`` -> the CLI's entry and the sub-command's function."""
    argv = shlex.split(cmd)
    assert argv[0] == "davs", f"stage command {cmd!r} does not run the davs CLI"
    sub = next(a for a in argv[1:] if not a.startswith("-"))
    return ["pipeline.cli:main"] + ([COMMANDS[sub]] if sub in COMMANDS else [])  # check-params: main itself


def _dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _code_files(dep: str) -> list[Path]:
    p = ROOT / dep
    if p.is_dir():
        return sorted(f.relative_to(ROOT) for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    return [Path(dep)]


def deps_problems(name: str, stage: dict) -> list[str]:
    """What is wrong with a stage's code deps, as fixes to make (empty when they match the closure)."""
    closure = set(import_closure(stage_entries(stage["cmd"])))
    deps = [d for d in _dep_paths(stage) if d.split("/")[0] in CODE]
    covered = {f for d in deps for f in _code_files(d)}
    out = []
    missing = sorted(str(f) for f in closure - covered)
    if missing:
        out.append(f"stage {name!r} runs code it does not depend on; add to its deps: {missing}")
    stale = [d for d in deps if not any(f in closure for f in _code_files(d) if f.suffix == ".py")]
    if stale:
        out.append(f"stage {name!r} depends on code it never imports; remove: {stale}")
    for d in deps:
        extra = sorted(str(f) for f in _code_files(d) if f.suffix == ".py" and f not in closure)
        if (ROOT / d).is_dir() and extra:
            out.append(f"stage {name!r}: directory dep {d} holds code it never imports {extra}; list files instead")
    return out


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_are_its_import_closure(name: str):
    problems = deps_problems(name, _stages()[name])
    assert not problems, "dvc.yaml: " + "; ".join(problems)


def test_drift_is_caught():
    """The check is not vacuous: dropping a file from a stage's deps, adding one it never imports, or
    widening a file to its whole directory is each reported."""
    gen = _stages()["gen"]
    dropped = dict(gen, deps=[d for d in gen["deps"] if d != "davs/training/loop.py"])
    assert "davs/training/loop.py" in " ".join(deps_problems("gen", dropped))
    extra = dict(gen, deps=gen["deps"] + ["davs/synth/face.py"])
    assert "remove: ['davs/synth/face.py']" in " ".join(deps_problems("gen", extra))
    wide = dict(gen, deps=gen["deps"] + ["davs/data"])
    assert "directory dep davs/data" in " ".join(deps_problems("gen", wide))


def test_closure_follows_function_local_imports_and_skips_type_checking(tmp_path: Path):
    pkg = tmp_path / "davs"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "words.txt").write_text("A\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from davs import hint\n"
        "def used():\n    return helper()\n"
        "def helper():\n    from davs.sub import b\n"
        "def unused():\n    from davs import c\n")
    for m in ("hint", "c"):
        (pkg / f"{m}.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from . import d\n")
    (pkg / "sub" / "d.py").write_text("import numpy\n")
    got = {str(p) for p in import_closure(["davs.a:used"], root=tmp_path)}
    assert got == {"davs/__init__.py", "davs/a.py", "davs/sub/__init__.py", "davs/sub/b.py", "davs/sub/d.py",
                   "davs/sub/words.txt"}
    whole = {str(p) for p in import_closure(["davs.a"], root=tmp_path)}
    assert "davs/c.py" in whole and "davs/hint.py" not in whole


def _param_deps(stage: dict) -> set[str]:
    return {k for d in stage.get("params", []) for k in ([d] if isinstance(d, str) else next(iter(d.values())) or [])}


def test_encoder_stages_rerun_when_a_model_key_that_shapes_their_networks_changes():
    """joint and disent train the encoders: every model.* key among the fields the encoders depend on
    (DAVSConfig.ENCODER_FIELDS) is in their params, and disent's Cw_p also reads model.dis_frames. Without
    this, `dvc exp run -S model.variant=paper` kept the old joint.pt and failed in gen."""
    from davs.models import DAVSConfig
    from pipeline.params import SECTIONS

    shaping = {f"model.{f}" for f in DAVSConfig.ENCODER_FIELDS if f in SECTIONS["model"].model_fields}
    assert {"model.variant", "model.width", "model.feat_dim"} <= shaping
    stages = _stages()
    for name, extra in (("joint", set()), ("disent", {"model.dis_frames"})):
        deps = _param_deps(stages[name])
        missing = sorted(k for k in shaping | extra if k not in deps and "model" not in deps)
        assert not missing, f"dvc.yaml: stage {name!r} must list params {missing}"
