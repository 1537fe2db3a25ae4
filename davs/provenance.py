"""What a result depends on: the import closure of code, and content hashes of files and shard sets.

One rule serves two users: DVC's stage dependencies (``tests/test_dvc_deps.py`` checks that every
stage in ``dvc.yaml`` lists the import closure of its entry point) and the training loop's resume
fingerprint (a checkpoint written by other code or from other shards is never resumed from).

The closure is static: every ``import`` / ``from ... import`` statement in a module counts, including
those inside functions, except under ``if TYPE_CHECKING:``. An entry point may be a function
(``"pipeline.stages:train"``): then only its module's top-level imports, its own body and the bodies
of the module-level functions and classes it names count, so that one stage of a module of stages
does not depend on its siblings' imports. Importing ``a.b.c`` also runs ``a/__init__.py`` and
``a/b/__init__.py``; a package's data files (non-Python files beside its ``__init__.py``) count too.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the directory holding the ``davs`` package
PACKAGES = ("davs", "pipeline")  # first-party packages: their files are dependencies


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file that defines ``module`` (``a/b.py`` or ``a/b/__init__.py``), or None if not first-party."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(nodes: Iterable[ast.AST], module: str, is_pkg: bool) -> set[str]:
    """Closure items named by the import statements under ``nodes``: ``"a.b"`` for ``import a.b`` and
    ``"a.b:c"`` for ``from a.b import c`` (relative imports resolved against ``module``)."""
    out: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_pkg else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.update(f"{base}:{a.name}" for a in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) + ":" for i in range(1, len(parts))]


def _reached(path: Path, module: str, name: str | None) -> set[str]:
    """Imports that run when ``module`` is used: all of them (``name`` None), or its top-level code plus
    the bodies of ``name`` and of the module-level definitions it names, transitively (``name`` "" is
    the top level alone)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    if name is None:
        return _imports([tree], module, is_pkg)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    seen: set[str] = set()
    todo = [name] if name in defs else []
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(x.id for x in ast.walk(defs[n]) if isinstance(x, ast.Name) and x.id in defs)
    return _imports(top, module, is_pkg) | _imports([defs[n] for n in seen], module, is_pkg)


def import_closure(entries: Iterable[str], root: Path = ROOT) -> list[Path]:
    """First-party files (relative to ``root``, sorted) that the entries need, transitively, with their
    parent packages and package data files. An entry is a module ``"a.b"`` (all its imports count) or a
    function ``"a.b:func"`` (see the module docstring)."""
    todo = list(entries)
    for e in todo:
        if module_file(e.partition(":")[0], root) is None:
            raise ValueError(f"{e}: not a first-party module under {root}")
    done: set[str] = set()
    files: set[Path] = set()
    while todo:
        item = todo.pop()
        if item in done:
            continue
        done.add(item)
        mod, colon, name = item.partition(":")
        f = module_file(mod, root)
        if f is None:  # third-party or standard library
            continue
        files.add(f)
        todo.extend(_parents(mod))
        if name and module_file(f"{mod}.{name}", root):  # ``from pkg import submodule``
            todo.extend([f"{mod}:", f"{mod}.{name}"])
            continue
        todo.extend(_reached(f, mod, name if colon else None))
    for f in list(files):
        if f.name == "__init__.py":  # package data shipped beside the code (e.g. word lists)
            files.update(p for p in f.parent.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc"))
    return sorted(p.relative_to(root) for p in files)


def hash_files(paths: Iterable[str | Path], root: Path = ROOT) -> str:
    """sha256 over the (relative path, content) of each file, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        full = p if p.is_absolute() else root / p
        h.update(p.as_posix().encode() + b"\0" + full.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_hash(entries: Iterable[str], root: Path = ROOT) -> str:
    """Hash of the import closure's sources: the code a result was computed with."""
    return hash_files(import_closure(entries, root), root)


def file_hash(path: str | Path | None) -> str:
    """Content hash of one file ("" for none), streamed: model files may be large."""
    if not path:
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


SHARD_METADATA = ("manifest.csv", "summary.json", "vocab.json", "identities.json")


def shards_hash(shard_dir: str | Path) -> str:
    """Identity of a shard set without reading its (possibly 100 GB of) tar files: the manifest of every
    sample with its shard, the summary, the class lists, and each shard's name and size."""
    d = Path(shard_dir)
    h = hashlib.sha256()
    for name in SHARD_METADATA:
        p = d / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"<absent>") + b"\0")
    h.update(json.dumps(sorted((p.name, p.stat().st_size) for p in d.glob("*.tar"))).encode())
    return h.hexdigest()[:16]


RESULT_PACKAGES = ("torch", "torchaudio", "numpy", "av", "opencv-python-headless", "pillow", "espeakng-loader",
                   "decord", "webdataset", "scikit-learn", "scipy", "dlib-bin")


def environment() -> dict:
    """What, besides code, params and data, the bytes of a result depend on: the CPU (float kernels are
    chosen per instruction set and cache sizes: the same code gives other bits on another CPU model),
    the core count (thread count changes summation order) and the numeric libraries' versions."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    cpu, isa = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                cpu = val.strip()
            elif key.strip() == "flags":
                isa = sorted(f for f in val.split() if f.startswith(("avx", "amx", "fma", "sse4")))
                break
    except OSError:
        pass
    packages = {}
    for name in RESULT_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "packages": packages}
