"""The trainer configs' fields, read from the files that declare them, without importing them.

``GroundingSFTConfig`` subclasses TRL's ``SFTConfig``, whose import takes ~10 s (it brings in
Transformers' ``TrainingArguments``, and torch); ``--help`` and the check of the option names
must answer in well under a second. So they read each class of the chain where it is
declared: ``ast`` over this package's ``training.py`` and the installed TRL's and
Transformers' modules (~30 ms together), taking each field's name, annotation, default (when
it is a literal) and ``metadata["help"]``, the same metadata the parsers read. Nothing is
copied into this repository, and a TRL upgrade shows its own defaults and words. The tests
check that this reading agrees with the imported classes and the real parser.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NOT_LITERAL", "TRAINER_CLASSES", "SourceField", "accepted_names", "class_chain", "trainer_fields"]

# The trainer configs: (module, class). Their bases are followed through the imports of each
# module; a base imported from a package's lazy top level is looked up here.
TRAINER_CLASSES = {
    "sft": ("trl_ground.config.training", "GroundingSFTConfig"),
    "grpo": ("trl_ground.config.training", "GroundingGRPOConfig"),
}
_DEFINED_IN = {
    ("trl", "SFTConfig"): "trl.trainer.sft_config",
    ("trl", "GRPOConfig"): "trl.trainer.grpo_config",
    ("transformers", "TrainingArguments"): "transformers.training_args",
}


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL = _NotLiteral()  # a default computed at run time (shown as nothing)


@dataclass(frozen=True)
class SourceField:
    """One dataclass field as declared: ``annotation`` is its source text (``"int | None"``),
    ``default`` the literal value (``None`` when there is none, :data:`NOT_LITERAL` when it is
    computed), ``help`` its ``metadata["help"]``, ``init`` whether ``__init__`` (and so the
    parser) takes it."""

    name: str
    annotation: str
    default: object
    help: str
    init: bool = True


def _module_file(module: str) -> Path:
    """The source file of ``module``, found without importing it (nor its packages)."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {top!r}")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*rest.split(".")).with_suffix(".py")


def _value(node: ast.AST, constants: dict):
    """The value of a literal expression, also naming the module's literal constants, in
    f-strings and ``+`` of strings; ``NOT_LITERAL`` otherwise."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name):
        return constants.get(node.id, NOT_LITERAL)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            value = _value(part.value, constants) if isinstance(part, ast.FormattedValue) else _value(part, constants)
            if value is NOT_LITERAL or (isinstance(part, ast.FormattedValue) and part.format_spec is not None):
                return NOT_LITERAL
            parts.append(repr(value) if isinstance(part, ast.FormattedValue) and part.conversion == ord("r") else str(value))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _value(node.left, constants), _value(node.right, constants)
        return NOT_LITERAL if NOT_LITERAL in (left, right) else left + right
    if isinstance(node, ast.Dict) and None not in node.keys:
        items = [(_value(k, constants), _value(v, constants)) for k, v in zip(node.keys, node.values)]
        return NOT_LITERAL if any(NOT_LITERAL in item for item in items) else dict(items)
    return NOT_LITERAL


def _field(name: str, annotation: str, value: ast.AST | None, constants: dict) -> SourceField:
    default, help_text, init = None, "", True
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        keywords = {k.arg: k.value for k in value.keywords}
        if "default" in keywords:
            default = _value(keywords["default"], constants)
        elif "default_factory" in keywords:
            factory = keywords["default_factory"]
            if isinstance(factory, ast.Lambda):
                default = _value(factory.body, constants)
            else:
                default = {"list": [], "dict": {}}.get(getattr(factory, "id", None), NOT_LITERAL)
        metadata = _value(keywords["metadata"], constants) if "metadata" in keywords else {}
        help_text = metadata.get("help", "") if isinstance(metadata, dict) else ""
        init = _value(keywords["init"], constants) if "init" in keywords else True
    elif value is not None:
        default = _value(value, constants)
    return SourceField(name, annotation, default, help_text, bool(init))


def _constants(tree: ast.Module) -> dict:
    """The module's top-level literal constants (``A = ...``, ``A, B = 1, 2``)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            constants[node.targets[0].id] = _value(node.value, constants)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple):
            value = _value(node.value, constants)
            if isinstance(value, tuple) and len(value) == len(node.targets[0].elts):
                constants.update({t.id: v for t, v in zip(node.targets[0].elts, value) if isinstance(t, ast.Name)})
    return constants


def _imports(module: str, tree: ast.Module) -> dict[str, tuple[str, str]]:
    """``{local name: (module, name)}`` of the module's ``from ... import ...`` statements."""
    package = module.rsplit(".", 1)[0]
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            out.update({alias.asname or alias.name: (source, alias.name) for alias in node.names})
    return out


@functools.lru_cache(maxsize=None)
def _read_class(module: str, class_name: str) -> tuple[dict[str, SourceField], tuple[tuple[str, str], ...]]:
    """The fields declared in the body of ``class_name`` of ``module`` (not inherited ones), and
    its bases as ``(module, class)``."""
    module = _DEFINED_IN.get((module, class_name), module)
    tree = ast.parse(_module_file(module).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            break
    else:
        raise LookupError(f"class {class_name} not found in {module}")
    constants, imports = _constants(tree), _imports(module, tree)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = []
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            bases.append((module, base.id))
        elif isinstance(base, ast.Name) and base.id in imports:
            bases.append(imports[base.id])
    fields = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            annotation = ast.unparse(stmt.annotation)
            if not annotation.startswith(("ClassVar", "typing.ClassVar")):
                fields[stmt.target.id] = _field(stmt.target.id, annotation, stmt.value, constants)
    return fields, tuple(bases)


def class_chain(kind: str) -> list[tuple[str, str]]:
    """The trainer config of ``kind`` and the classes it inherits from, subclass first."""
    chain, todo = [], [TRAINER_CLASSES[kind]]
    while todo:
        module, name = todo.pop(0)
        module = _DEFINED_IN.get((module, name), module)
        chain.append((module, name))
        todo = list(_read_class(module, name)[1]) + todo
    return chain


@functools.lru_cache(maxsize=None)
def trainer_fields(kind: str) -> dict[str, SourceField]:
    """Every field of the trainer config of ``kind`` (``"sft"`` or ``"grpo"``), a subclass's
    declaration winning over its base's, as ``dataclasses.fields`` would give them."""
    merged: dict[str, SourceField] = {}
    for module, class_name in reversed(class_chain(kind)):
        merged.update(_read_class(module, class_name)[0])
    return merged


def accepted_names(kind: str) -> set[str]:
    """The names (underscores) the parser gives flags to for the trainer config's fields:
    each ``__init__`` field, and ``no_<name>`` for a boolean that defaults to True."""
    names = set()
    for f in trainer_fields(kind).values():
        if f.init:
            names.add(f.name)
            if f.default is True and f.annotation in ("bool", "bool | None", "Optional[bool]"):
                names.add(f"no_{f.name}")
    return names
