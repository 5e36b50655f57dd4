"""The dependency direction is the architecture: common imports neither client nor
server; client and server never import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"common": {"client", "server"}, "client": {"server"}, "server": {"client"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layers(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for f in files:
        bad = _imports(f) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_flower_types_enter_common_in_one_module():
    users = [
        f.relative_to(ROOT).as_posix()
        for f in (ROOT / "common").rglob("*.py")
        if "flwr" in _imports(f)
    ]
    assert sorted(users) == ["common/weights.py"]
