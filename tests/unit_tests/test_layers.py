"""The layers hold (ARCHITECTURE.md): import-linter's contracts pass on the code and fail on a
wrong import, and every import sits at the top of its file except a heavy optional extra's."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("prompts", "endpoints", "nodes", "graph", "refine_n_judge", "evals", "benchmarks")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Imported inside functions, so `pip install refine-n-judge` works without them.
HEAVY_EXTRAS = {
    "ray": "ray",
    "starlette": "view",
    "uvicorn": "view",
    "jinja2": "view",
    "orjson": "view",
    "matplotlib": "evals",
    "datasets": "data",
    "pyarrow": "data",
    "llama_cpp": "local",
}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root` with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # Only `root` on the path: the copy is analysed, never the installed checkout.
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root), "PYTHONSAFEPATH": ""},
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the project's packages and pyproject.toml to break on purpose."""
    for package in (*PACKAGES, "tests"):
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.txt", "*.jsonl", "*.png", "*.html"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract", "named"),
    [
        (
            "nodes/decision.py",
            "from graph.builder import build_graph",
            "Layers: the applications over the method",
            "nodes.decision -> graph.builder",
        ),
        (
            "nodes/decision.py",
            "from refine_n_judge.curate import exports",
            "Layers: the applications over the method",
            "nodes.decision -> refine_n_judge.curate.exports",
        ),
        (
            "endpoints/tokens.py",
            "from nodes import state",
            "Layers: the applications over the method",
            "endpoints.tokens -> nodes.state",
        ),
        (
            "nodes/judge.py",
            "from endpoints.embedded import MODEL_ALIAS",
            "The method uses the model endpoints only through",
            "nodes.judge -> endpoints.embedded",
        ),
        (
            "refine_n_judge/curate/exports.py",
            "from tests.support import fake_openai",
            "The product never imports the test support",
            "refine_n_judge.curate.exports -> tests.support.fake_openai",
        ),
        (
            "nodes/decision.py",
            "from nodes import judge",
            "No import cycles between the modules of a package",
            "No cycles are allowed in nodes.",
        ),
    ],
    ids=[
        "method-imports-graph",
        "method-imports-app",
        "endpoints-import-method",
        "method-names-embedded",
        "product-imports-tests",
        "cycle",
    ],
)
def test_a_wrong_import_breaks_its_contract(
    checkout: Path, module: str, wrong_import: str, contract: str, named: str
) -> None:
    path = checkout / module
    source = path.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    assert marker in source
    path.write_text(source.replace(marker, f"{marker}\n{wrong_import}\n", 1), encoding="utf-8")

    result = lint_imports(checkout)

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"Contracts: \d kept, [12] broken\.", result.stdout)
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
    assert named in broken


def _function_level_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, comments) for each import that is not at the top of the file
    (`if TYPE_CHECKING:`, `try:` and `with` blocks at the top count as top). The comments are
    those on its line and on the imports, comments and blank lines right above it: a group of
    lazy imports shares one comment."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    top: set[int] = set()
    for node in tree.body:
        block = isinstance(node, ast.If | ast.Try | ast.With)
        for inner in ast.walk(node) if block else [node]:
            top.add(id(inner))
    found = []
    for node in ast.walk(tree):
        if id(node) in top:
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        else:
            continue
        comments = [lines[node.lineno - 1].partition("#")[2]]
        row = node.lineno - 2
        while row >= 0:
            line = lines[row].strip()
            if line.startswith("#"):
                comments.append(line[1:])
            elif not line or line.startswith(("import ", "from ", "try:")):
                comments.append(line.partition("#")[2])
            else:
                break
            row -= 1
        comment = " ".join(c.strip() for c in reversed(comments) if c.strip())
        found += [(node.lineno, module, comment) for module in modules]
    return found


def _names_its_extra(module: str, comment: str) -> bool:
    """A heavy extra imported lazily with a comment naming it; or one of the project's modules
    that needs such an extra, with a comment naming which."""
    top = module.split(".")[0]
    extras = set(HEAVY_EXTRAS.values()) if top in PACKAGES else {HEAVY_EXTRAS.get(top)}
    words = set(re.findall(r"[a-z]+", comment.lower()))
    return "extra" in words and any(extra in words for extra in extras)


def test_imports_sit_at_the_top_of_their_files_except_heavy_extras() -> None:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 60
    offenders = []
    for path in files:
        for line, module, comment in _function_level_imports(path):
            if not _names_its_extra(module, comment):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module} ({comment or '-'})")
    assert offenders == []


@pytest.mark.parametrize(
    ("module", "comment", "allowed"),
    [
        ("ray.data", " the `ray` extra", True),
        ("ray", " heavy", False),
        ("matplotlib.pyplot", " the `view` extra", False),
        ("refine_n_judge.curate.ray_cluster", " needs the `ray` extra", True),
        ("endpoints.settings", "", False),
        ("json", " the `data` extra", False),
        ("pyarrow.parquet", "the data extra: parquet input", True),
        ("datasets", "extras are heavy", False),
    ],
)
def test_only_a_named_heavy_extra_may_be_imported_lazily(
    module: str, comment: str, allowed: bool
) -> None:
    assert _names_its_extra(module, comment) is allowed


def test_the_top_of_file_check_catches_a_hidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from graph import Context\n"
        "def f():\n"
        "    from endpoints.embedded import MODEL_ALIAS\n"
        "    x = 1\n"
        "    # the `ray` extra\n"
        "    import ray\n"
        "\n"
        "    import ray.data  # Ray Data\n",
        encoding="utf-8",
    )
    assert _function_level_imports(sample) == [
        (6, "endpoints.embedded", ""),
        (9, "ray", "the `ray` extra"),
        (11, "ray.data", "the `ray` extra Ray Data"),
    ]
