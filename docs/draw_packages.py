"""Draw trl_ground's packages in their layers, with the imports between them (docs/packages.png).

    python docs/draw_packages.py            # rewrites docs/packages.png

Each box is a package (its modules listed), bottom to top as :data:`trl_ground.PACKAGE_LAYERS`
orders them; an arrow from A to B means a module of A imports from B. Every arrow points down
(``tests/trl_ground/test_package_layers.py`` fails otherwise)."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trl_ground import PACKAGE_LAYERS  # noqa: E402

PACKAGE = ROOT / "trl_ground"


def package_imports(path: Path) -> set[str]:
    """The trl_ground packages (and ``rewards``) that the module at ``path`` imports from;
    imports for type annotations only (under ``if TYPE_CHECKING:``) left out."""
    here = path.relative_to(PACKAGE).parts
    tree = ast.parse(path.read_text())
    annotations_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:-1])
                base = base[: len(base) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [a.name for a in node.names][:1])
            elif node.module and node.module.split(".")[0] == "rewards":
                parts = ["rewards"]
            elif node.module and node.module.startswith("trl_ground."):
                parts = node.module.split(".")[1:]
            else:
                continue
            out.add(parts[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("trl_ground.")}
            out |= {"rewards" for a in node.names if a.name.split(".")[0] == "rewards"}
    return out


def edges() -> Counter:
    """``{(package, imported package): modules of the first that import from the second}``."""
    found = Counter()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) < 2:
            continue
        for other in package_imports(path) - {rel.parts[0]}:
            found[(rel.parts[0], other)] += 1
    return found


def modules(package: str) -> list[str]:
    folder = PACKAGE / package
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.py") if p.name != "__init__.py")


def draw(out: Path) -> Path:
    """Boxes stacked bottom to top; each import edge routed in its own lane on the right
    (shorter spans nearer the boxes), its head at the imported package."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = ["rewards", *PACKAGE_LAYERS]
    links = sorted(edges(), key=lambda e: (layers.index(e[0]) - layers.index(e[1]), layers.index(e[0])))
    width, step, right = 7.0, 1.0, 7.2
    fig, ax = plt.subplots(figsize=(11, 0.75 * len(layers) + 0.8))
    for i, name in enumerate(layers):
        y = i * step
        names = "torch-free scoring, its own top-level package" if name == "rewards" else ", ".join(modules(name))
        ax.add_patch(plt.Rectangle((0, y), width, 0.72, fc="#eef3fb" if name != "rewards" else "#f2f2f2", ec="#345"))
        ax.text(0.12, y + 0.5, name, fontsize=11, weight="bold", va="center")
        ax.text(0.12, y + 0.2, names if len(names) < 118 else names[:115] + "...", fontsize=7, va="center")
    for lane, (src, dst) in enumerate(links):
        ys, yd = layers.index(src) * step + 0.36, layers.index(dst) * step + 0.36
        x = right + 0.09 * lane
        up = yd > ys
        color = "red" if up else "#567"
        ax.plot([width, x, x], [ys + 0.12, ys + 0.12, yd - 0.12], color=color, lw=0.8)
        ax.annotate("", xy=(width, yd - 0.12), xytext=(x, yd - 0.12), arrowprops={"arrowstyle": "-|>", "color": color, "lw": 0.8})
    ax.set_xlim(-0.1, right + 0.09 * len(links) + 0.3)
    ax.set_ylim(-0.2, len(layers) * step)
    ax.axis("off")
    ax.set_title("trl_ground's packages, bottom to top: each line, from its box's top-right, imports from the box its arrow meets"
                 "\n(every one points down; a red one would point up)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(ROOT / "docs" / "packages.png"))
