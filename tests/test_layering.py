"""The dependency direction is the architecture.

``common`` imports neither ``client`` nor ``server``; ``client`` and ``server`` never
import each other. Inside ``common`` data flows one way: the offline ingestion
(``common.ingest``) is never imported by the run-time layers (``data``, ``ml``,
``tracking``) or by the apps; ``reporting`` (dashboard, reports) sits above
``tracking``, ``ml`` and ``experiments``; nothing below the CLI imports the CLI.
Every module imports OncoFed as ``oncofed.*``, never as a bare top-level ``common``.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "common": {"oncofed.client", "oncofed.server"},
    "client": {"oncofed.server", "oncofed.common.ingest", "oncofed.common.cli"},
    "server": {"oncofed.client", "oncofed.common.cli"},
    "common/data": {"oncofed.common.ingest", "oncofed.common.ml",
                    "oncofed.common.experiments", "oncofed.common.cli"},
    "common/ml": {"oncofed.common.ingest", "oncofed.common.experiments",
                  "oncofed.common.cli"},
    "common/tracking": {"oncofed.common.ingest", "oncofed.common.ml",
                        "oncofed.common.experiments", "oncofed.common.cli"},
    "common/reporting": {"oncofed.common.ingest", "oncofed.common.cli"},
    "common/ingest": {"oncofed.common.experiments", "oncofed.common.cli"},
    "common/experiments": {"oncofed.common.cli"},
}  # fmt: skip
BARE = {"common", "client", "server"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _hits(imports: set[str], banned: set[str]) -> set[str]:
    return {i for i in imports for b in banned if i == b or i.startswith(b + ".")}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_package_imports_respect_layers(folder):
    files = list((ROOT / folder).rglob("*.py"))
    assert files
    for f in files:
        bad = _hits(_imports(f), FORBIDDEN[folder])
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_everything_imports_oncofed_by_its_installed_name():
    for folder in ("common", "client", "server", "tests", "benchmarks"):
        for f in (ROOT / folder).rglob("*.py"):
            bare = {i for i in _imports(f) if i.split(".")[0] in BARE}
            assert not bare, f"{f.relative_to(ROOT)} imports {bare}"


def test_flower_types_enter_common_in_one_module():
    users = [
        f.relative_to(ROOT).as_posix()
        for f in (ROOT / "common").rglob("*.py")
        if any(i.split(".")[0] == "flwr" for i in _imports(f))
    ]
    assert sorted(users) == ["common/ml/weights.py"]


def test_every_module_says_what_it_is_for():
    """Every module opens with a docstring (its first line: what it is for)."""
    for folder in ("common", "client", "server"):
        for f in (ROOT / folder).rglob("*.py"):
            doc = ast.get_docstring(ast.parse(f.read_text()))
            assert doc and doc.strip(), f"{f.relative_to(ROOT)} has no docstring"
