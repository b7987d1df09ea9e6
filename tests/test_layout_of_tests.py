"""The layout of the tests themselves: test modules share helpers through ``tests/helpers.py``
and conftest fixtures, never by importing one another; every module of the packages is
imported by at least one test module."""

import ast
from pathlib import Path

from tests.helpers import REPO

TESTS = REPO / "tests"
PACKAGES = ("trl_ground", "rewards")
# Modules that cannot be tested on a CPU: each is tested in tests/gpu (marked ``gpu``).
CPU_UNTESTABLE: dict[str, str] = {}


def all_test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the modules that ``path`` (or ``source`` as if it were ``path``)
    imports: ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a module);
    relative imports are resolved against ``path``'s package."""
    package = path.relative_to(REPO).parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def package_modules() -> list[str]:
    modules = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def reexports(module: str) -> dict[str, str]:
    """For a package, ``{name: submodule}`` of the names its ``__init__`` takes from its own
    submodules: imported (``from .coco import from_coco``) or loaded on first use (a
    ``_LAZY = {name: submodule}`` dict, as in ``trl_ground/config``). A test importing
    ``from_coco`` from the package imports ``trl_ground.data.formats.coco``."""
    init = REPO.joinpath(*module.split("."), "__init__.py")
    if not init.is_file():
        return {}
    found = {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = f"{module}.{node.module}"
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_LAZY"]:
            found.update({name: f"{module}.{sub}" for name, sub in ast.literal_eval(node.value).items()})
    return found


def modules_to_tests() -> dict[str, list[str]]:
    """Each module of the packages -> the test modules that import it (or a name it defines,
    through its package's ``__init__``, or, for a package, one of its modules)."""
    covered: dict[str, list[str]] = {m: [] for m in package_modules()}
    for path in all_test_files():
        names = imported_modules(path)
        for name in list(names):
            package, _, attribute = name.rpartition(".")
            if package in covered:
                names.add(reexports(package).get(attribute, name))
        # importing a module runs its packages' __init__ too
        names |= {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 1)}
        for name in names & covered.keys():
            covered[name].append(str(path.relative_to(REPO)))
    return covered


def test_no_test_module_imports_another_or_the_conftest():
    offenders = []
    for path in all_test_files():
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "tests" and any(part.startswith("test_") or part == "conftest" for part in parts[1:]):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "share helpers through tests/helpers.py or a conftest fixture:\n" + "\n".join(offenders)


def test_only_test_modules_conftests_and_the_helpers_in_tests():
    """One helpers module: any other non-test module under tests/ would be a second one."""
    others = [str(p.relative_to(REPO)) for p in TESTS.rglob("*.py")
              if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py") and p != TESTS / "helpers.py"]
    assert not others, others


def test_every_module_is_imported_by_a_test_module():
    covered = modules_to_tests()
    untested = sorted(m for m, tests in covered.items() if not tests and m not in CPU_UNTESTABLE)
    assert not untested, f"modules that no test module imports: {untested}"
    assert set(CPU_UNTESTABLE) <= covered.keys(), "the allow-list names a module that no longer exists"


def test_the_checks_see_imports():
    """The checks catch what they are meant to: relative imports of a sibling test module and
    of the conftest, and a name imported from a package resolved to the submodule defining it."""
    sibling = TESTS / "trl_ground" / "test_example.py"
    names = imported_modules(sibling, "from .test_trainer import make_trainer\nfrom ..conftest import REPO\n")
    assert {"tests.trl_ground.test_trainer.make_trainer", "tests.conftest.REPO"} <= names
    assert reexports("trl_ground.data.formats")["from_coco"] == "trl_ground.data.formats.coco"
    assert reexports("rewards")["parse_boxes"] == "rewards.parsing"
    assert reexports("trl_ground.config")["parse_args"] == "trl_ground.config.parser"
