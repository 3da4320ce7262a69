"""What `pip install .` installs: the package, py.typed and the dashboard's static files, nothing else (no
tests, examples, benchmarks).

Built from a copy of the tree with the running interpreter's setuptools and
no network (--no-build-isolation): skipped where that setuptools is too old.
"""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The dashboard's page template, stylesheet, script and icon: served from the package, so in every wheel.
DASHBOARD_STATIC = {f"webhooklite/dashboard/static/{name}"
                    for name in ("page.html", "dashboard.css", "dashboard.js", "favicon.svg")}
PACKAGE_FILES = ({p.relative_to(ROOT).as_posix() for p in (ROOT / "webhooklite").rglob("*.py")} | {"webhooklite/py.typed"}
                 | DASHBOARD_STATIC)


def test_every_static_file_of_the_dashboard_is_listed():
    found = {p.relative_to(ROOT).as_posix() for p in (ROOT / "webhooklite" / "dashboard" / "static").iterdir()}
    assert found == DASHBOARD_STATIC


def _setuptools_version():
    try:
        import setuptools
    except ImportError:
        return None
    return tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])


def _has_wheel_command():
    version = _setuptools_version()
    if version is None or version < (61, 0):
        return False
    if version >= (70, 1):  # setuptools ships bdist_wheel itself from 70.1
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


def copy_tree(dest: Path) -> Path:
    """The working tree, with the folders a build must leave out, and without build leftovers."""
    src = dest / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.db"),
    )
    for folder in ("tests", "examples", "benchmarks"):
        (src / folder).mkdir(exist_ok=True)
        (src / folder / "__init__.py").write_text("")  # even as a package, it must not be picked up
    return src


def check_metadata(text: str) -> None:
    assert re.search(r"^Name: webhooklite$", text, re.M)
    assert re.search(r"^Requires-Python: >=3\.9$", text, re.M)
    assert re.search(r"^(License: MIT|License-Expression: MIT)$", text, re.M)
    assert "Classifier: Programming Language :: Python :: 3.9" in text
    assert "Classifier: Typing :: Typed" in text
    assert re.search(r"^Project-URL: Source, ", text, re.M)
    assert not re.search(r"^Requires-Dist: (?!.*extra ==)", text, re.M), "no runtime dependencies"


@pytest.mark.skipif(not _has_wheel_command(), reason="needs setuptools>=70.1 (or >=61 with wheel) in this interpreter")
def test_wheel_holds_the_package_and_py_typed_only(tmp_path):
    src = copy_tree(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("webhooklite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    package = {n for n in names if not n.startswith("webhooklite-")}
    assert DASHBOARD_STATIC <= package, DASHBOARD_STATIC - package
    assert package == PACKAGE_FILES
    dist_info = {n.split("/", 1)[1] for n in names if n.startswith("webhooklite-")}
    assert {"METADATA", "WHEEL", "RECORD"} <= dist_info
    assert any(n.endswith("LICENSE") for n in dist_info)
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    check_metadata(zipfile.ZipFile(wheel).read(metadata).decode())


@pytest.mark.skipif(_setuptools_version() is None or _setuptools_version() < (61, 0),
                    reason="needs setuptools>=61 (pyproject metadata) in this interpreter")
def test_build_collects_the_package_and_py_typed_only(tmp_path):
    # What goes into any wheel is what build_py collects; this needs no `wheel` package.
    src = copy_tree(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
         "egg_info", "--egg-base", str(tmp_path), "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=src, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    built = {p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*") if p.is_file()}
    assert DASHBOARD_STATIC <= built, DASHBOARD_STATIC - built
    assert built == PACKAGE_FILES
    check_metadata((tmp_path / "webhooklite.egg-info" / "PKG-INFO").read_text())
