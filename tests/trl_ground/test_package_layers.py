"""The packages of trl_ground by concern, in layers: a module imports from its own package or
from packages below it, never from one above (``docs/packages.png``, drawn by
``docs/draw_packages.py`` from the same import graph that is checked here)."""

import importlib.util

from tests.helpers import REPO
from trl_ground import PACKAGE_LAYERS


def load_drawing():
    spec = importlib.util.spec_from_file_location("draw_packages", REPO / "docs" / "draw_packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_lies_in_a_package_of_the_layers():
    package = REPO / "trl_ground"
    assert {p.name for p in package.iterdir() if (p / "__init__.py").is_file()} == set(PACKAGE_LAYERS)
    assert [p.name for p in package.glob("*.py")] == ["__init__.py"]


def test_no_import_runs_up_the_layers():
    drawing = load_drawing()
    layers = ["rewards", *PACKAGE_LAYERS]
    links = drawing.edges()
    assert ("train", "loss") in links and ("loss", "sampling") in links  # the graph is read
    upward = [f"{src} imports from {dst}" for src, dst in links if layers.index(dst) > layers.index(src)]
    assert upward == []


def test_the_picture_is_drawn(tmp_path):
    out = load_drawing().draw(tmp_path / "packages.png")
    assert out.stat().st_size > 10_000
