"""The library's layout as the README's Layout section states it: layers that import only downwards, no
private names imported across modules, modules and notebook cells of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest

from mllm_ood.paths import NOTEBOOKS, ROOT

PACKAGE = ROOT / "lib" / "mllm_ood"
# Bottom to top; a module may import its own layer and those below (validation: nothing of the package).
LAYERS = [
    {"paths", "seeding", "progress", "validation"},
    {"cache", "hf_datasets_cache", "data", "stats", "plotting"},
    {"formats", "claims"},
    {"mllm"},
    {"paper_a", "paper_b"},
    {"runner", "__main__"},
]
MAX_MODULE_LINES = 500


def _layer(top: str) -> int:
    if top == "__init__":
        return 0
    for k, names in enumerate(LAYERS):
        if top in names:
            return k
    raise AssertionError(f"lib/mllm_ood/{top} is in no layer of the README's layout: add it to LAYERS and the README")


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _imports(path: Path, rel: Path):
    """(absolute module, imported names) of every package import in ``path``, a file at ``rel`` in the package."""
    tree = ast.parse(path.read_text())
    pkg = ["mllm_ood", *rel.parent.parts]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "mllm_ood" or mod.startswith("mllm_ood."):
                yield mod, [a.name for a in node.names]


def upward_imports(path: Path, rel: Path) -> list[str]:
    """The package imports of ``path`` (at ``rel`` in the package) that break the layering."""
    top = rel.parts[0].removesuffix(".py")
    own, bad = _layer(top), []
    for mod, names in _imports(path, rel):
        parts = mod.split(".")
        targets = [parts[1]] if len(parts) > 1 else [n for n in names if n not in ("CODE_VERSION", "__version__")]
        for t in targets:
            if top == "validation" or _layer(t) > own:
                bad.append(f"{rel} (layer {own}) imports {mod}")
    return bad


def _rel(path: Path) -> Path:
    return path.relative_to(PACKAGE)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(_rel(p)))
def test_module_imports_only_downwards(path):
    assert upward_imports(path, _rel(path)) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(_rel(p)))
def test_no_private_name_crosses_modules(path):
    for mod, names in _imports(path, _rel(path)):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{_rel(path)} imports private {private} from {mod}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(_rel(p)))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{_rel(path)} has {n} lines (at most {MAX_MODULE_LINES})"


def test_layering_rule_catches_upward_imports(tmp_path):
    """The rule can fail: a lowest-layer module importing the models, and validation importing paths."""
    bad = tmp_path / "m.py"
    bad.write_text("from .mllm import load_model\nfrom . import paths\n")
    assert len(upward_imports(bad, Path("seeding.py"))) == 1
    assert len(upward_imports(bad, Path("validation.py"))) == 2
    assert upward_imports(bad, Path("paper_a/zero_shot.py")) == []


def test_notebook_04_is_short():
    nb = jupytext.read(NOTEBOOKS / "04_emi_bound.py")
    lines = len((NOTEBOOKS / "04_emi_bound.py").read_text().splitlines())
    assert lines <= 350, f"notebook 04 has {lines} lines (at most 350)"
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            n = len(cell.source.splitlines())
            assert n <= 20, f"a code cell of notebook 04 has {n} lines (at most 20): {cell.source[:80]!r}"
