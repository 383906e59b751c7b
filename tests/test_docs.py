"""The documentation holds: docstring examples and page snippets run, the methods table
names real front-ends, and the built site shows no unrendered markup.

The site test builds with MkDocs (the docs extra, ``make docs`` puts it in
``.venv-docs``); where MkDocs is not installed it is skipped, not failed.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import glf_losses
from glf_losses import registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The modules of the API reference whose examples run as doctests (the private ones define
# GLFParts, get_backend and get_namespace, which glf_losses re-exports). A framework's
# module runs where that framework is installed.
DOCTEST_MODULES = {
    "glf_losses._lib": None,
    "glf_losses._namespace": None,
    "glf_losses.adc": None,
    "glf_losses.align": None,
    "glf_losses.constrain": None,
    "glf_losses.methods": None,
    "glf_losses.distributed": None,
    "glf_losses.testing": None,
    "glf_losses.registry": None,
    "glf_losses.backends.torch.frontends": "torch",
    "glf_losses.backends.jax.frontends": "jax",
    "glf_losses.backends.tensorflow.frontends": "tensorflow",
}

# Frameworks a snippet may import; the snippet is skipped where one is missing.
OPTIONAL_IMPORTS = ("torch", "jax", "tensorflow", "keras", "optax", "flax")

# A code line longer than this is cut off at the column's edge on a 1280-pixel-wide
# window (measured on the built site), so it would hide its end from the reader.
MAX_CODE_COLUMNS = 80

NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<why>[^>]*\S)\s*-->")


def _pages() -> list[Path]:
    # The API pages are mkdocstrings directives; their code lives in the docstrings.
    return sorted(p for p in DOCS.rglob("*.md") if "api" not in p.relative_to(DOCS).parts)


def _fences(text: str) -> Iterator[tuple[int, str, str, str | None]]:
    """(line number, language, code, no-run reason) of each fenced block of a page."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\w*)", lines[i])
        if not match:
            i += 1
            continue
        indent, lang, start = len(match.group(1)), match.group(2), i + 1
        # The marker is the last non-blank line before the fence.
        before = next((b for b in reversed(lines[:i]) if b.strip()), "")
        reason = NO_RUN.search(before)
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        yield start, lang, "\n".join(body), reason.group("why") if reason else None


def _methods() -> list[dict[str, Any]]:
    return yaml.safe_load((DOCS / "methods.yml").read_text(encoding="utf-8"))["methods"]


def _snippets() -> list[Any]:
    cases = []
    for page in _pages():
        rel = page.relative_to(ROOT).as_posix()
        for line, lang, code, reason in _fences(page.read_text(encoding="utf-8")):
            if lang != "python":
                continue
            marks = [pytest.mark.skip(reason=f"marked no-run: {reason}")] if reason else []
            cases.append(pytest.param(code, id=f"{rel}:{line}", marks=marks))
    for m in _methods():
        if m.get("example"):
            cases.append(pytest.param(m["example"], id=f"docs/methods.yml:{m['id']}"))
    return cases


@pytest.mark.parametrize("module_name", sorted(DOCTEST_MODULES))
def test_docstring_examples_run(module_name: str) -> None:
    framework = DOCTEST_MODULES[module_name]
    if framework is not None:
        pytest.importorskip(framework)
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # The finder keeps objects defined in the module: re-exports are tested where defined.
    tests = [t for t in finder.find(module, module_name) if t.examples]
    assert tests, f"{module_name} has no docstring examples; its public functions need one"
    out = io.StringIO()
    for test in tests:
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, out.getvalue()


@pytest.mark.parametrize("code", _snippets())
def test_snippet_runs_on_its_own(code: str) -> None:
    """Each Python block of a page runs in a fresh namespace: a reader can copy any one."""
    for name in OPTIONAL_IMPORTS:
        if re.search(rf"^\s*(import|from) {name}\b", code, re.MULTILINE):
            pytest.importorskip(name)
    # A snippet may register a method (docs/adding-a-method.md): the rest of the suite must
    # not see it.
    saved = dict(registry._REGISTRY)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "<snippet>", "exec"), {"__name__": "__snippet__"})
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


def test_code_lines_fit_the_column() -> None:
    too_long = []
    for page in _pages():
        for line, _, code, _ in _fences(page.read_text(encoding="utf-8")):
            for offset, text in enumerate(code.splitlines(), start=1):
                if len(text) > MAX_CODE_COLUMNS:
                    rel = page.relative_to(ROOT).as_posix()
                    too_long.append(f"{rel}:{line + offset} ({len(text)} columns)")
    for m in _methods():
        for offset, text in enumerate((m.get("example") or "").splitlines(), start=1):
            if len(text) > MAX_CODE_COLUMNS:
                too_long.append(f"docs/methods.yml {m['id']} example line {offset}")
    assert not too_long, (
        f"code lines over {MAX_CODE_COLUMNS} columns are cut off on the site; wrap them: "
        + ", ".join(too_long)
    )


def test_methods_table_names_real_front_ends() -> None:
    listed = set()
    for m in _methods():
        for framework, names in m["frontends"].items():
            for name in names:
                if not re.fullmatch(r"[\w.]+", name):
                    continue  # a note in words
                listed.add(name)
                module_name, _, attr = name.rpartition(".")
                needs = module_name.rpartition(".")[2] if "backends" in module_name else None
                if needs is not None and needs != "numpy":
                    pytest.importorskip(needs)
                module = importlib.import_module(module_name)
                assert hasattr(module, attr), (
                    f"docs/methods.yml ({m['id']}, {framework}) names {name}, which does not "
                    f"exist: correct the name or add the front-end"
                )
    # Every method's loss of the top-level API has its row.
    losses = {f"glf_losses.{n}" for n in glf_losses.__all__ if n.endswith("_loss")}
    missing = sorted(losses - listed)
    assert not missing, (
        f"docs/methods.yml has no entry naming {missing}: add one per method (paper, code, "
        "GLF split, defaults, front-ends, example)"
    )


def _mkdocs_command() -> list[str] | None:
    """``make docs``'s MkDocs if it was built here, else this interpreter's, else None."""
    for venv in (ROOT / ".venv-docs", Path(sys.prefix)):
        exe = venv / "bin" / "mkdocs"
        if exe.exists():
            return [str(exe)]
    if importlib.util.find_spec("mkdocs") is not None:
        return [sys.executable, "-m", "mkdocs"]
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    command = _mkdocs_command()
    if command is None:
        pytest.skip("MkDocs is not installed: run `make docs` (installs the docs extra)")
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    print(f"site built in {time.perf_counter() - start:.1f} s")
    return out


def _prose(html: str) -> str:
    """The page without its code blocks, where ``>>>`` and roles are legitimate."""
    return re.sub(r"<pre\b.*?</pre>", "", html, flags=re.DOTALL)


def test_api_pages_render_roles_math_and_examples(site: Path) -> None:
    pages = sorted((site / "api").rglob("index.html"))
    assert pages, "the site has no API pages"
    problems = []
    for page in pages:
        prose = _prose(page.read_text(encoding="utf-8"))
        rel = page.relative_to(site).as_posix()
        for match in re.finditer(r":(?:py:)?[a-z]+:`[^`<]*`", prose):
            problems.append(f"{rel}: raw Sphinx role {match.group(0)}")
        for match in re.finditer(r"\.\. [a-z-]+::", prose):
            problems.append(f"{rel}: raw directive {match.group(0)}")
        if "&gt;&gt;&gt;" in prose or ">>>" in prose:
            problems.append(f"{rel}: a doctest outside a code block (an unrendered example)")
    assert not problems, "\n".join(problems)
    adc = (site / "api" / "adc" / "index.html").read_text(encoding="utf-8")
    # Math became MathJax input and examples became highlighted code.
    assert 'class="arithmatex"' in adc
    assert "highlight" in adc and "&gt;&gt;&gt;" in adc


def test_backend_pages_list_public_front_ends_only(site: Path) -> None:
    torch_page = (site / "api" / "backends-torch" / "index.html").read_text(encoding="utf-8")
    assert 'id="backends.torch.frontends.MethodLoss"' in torch_page
    ids = re.findall(r'id="(backends\.[\w.]+)"', torch_page)
    for helper in ("fori_loop", "all_gather", "to_numpy", "select_kth", "stop_gradient"):
        assert not [i for i in ids if i.endswith("." + helper)], helper


def test_site_serves_mathjax_itself(site: Path) -> None:
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").is_file()
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', text)
        remote = [s for s in scripts if re.match(r"(https?:)?//", s)]
        assert not remote, f"{page.relative_to(site)} loads scripts from the network: {remote}"


def test_docs_extra_needs_no_framework() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    frameworks = ("torch", "jax", "tensorflow", "flax", "optax", "keras")
    named = [req for req in extras["docs"] if re.match(rf"({'|'.join(frameworks)})\b", req)]
    assert not named, f"the docs extra must not install a framework, got {named}"

