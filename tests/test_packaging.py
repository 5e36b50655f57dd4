"""Installing OncoFed claims one top-level name, ``oncofed``.

The folders ``common/``, ``client/`` and ``server/`` install as
``oncofed.common``, ``oncofed.client`` and ``oncofed.server`` (setuptools
``package-dir``), so OncoFed never shadows another package called ``common``,
``client`` or ``server``, nor is shadowed by one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile

from tests.conftest import ROOT

TOPS = ("common", "client", "server")


def _source_packages() -> set[str]:
    return {
        "oncofed." + init.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for top in TOPS
        for init in (ROOT / top).rglob("__init__.py")
    }


def test_pyproject_lists_every_package_folder():
    """A folder missing from the list would be left out of a wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _source_packages()
    assert config["package-dir"] == {f"oncofed.{t}": t for t in TOPS}


def test_wheel_holds_only_the_oncofed_namespace(tmp_path):
    # build from a copy: pip builds in the source tree and would leave build/ there
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *TOPS):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src),
         "-w", str(tmp_path)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("oncofed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"oncofed", wheel.name.split("-py")[0] + ".dist-info"}, tops
    sources = {
        "oncofed/" + p.relative_to(ROOT).as_posix()
        for t in TOPS
        for p in (ROOT / t).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }  # modules and package data (the TCGA study-abbreviation table)
    assert sources <= set(names), sorted(sources - set(names))[:5]


def test_installed_package_imports_from_outside_the_checkout(tmp_path):
    """From another folder the apps import as oncofed.*, and no top-level
    common / client / server module exists."""
    code = (
        "import importlib.util as u\n"
        "import oncofed.client.app, oncofed.server.app, oncofed.common.cli\n"
        f"print([u.find_spec(n) for n in {TOPS!r}])\n"
        "print(oncofed.common.cli.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["[None, None, None]", "oncofed.common.cli"]
