"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

- MathJax is served with the site: its files come from the ``sphinx-mathjax-offline``
  package of the docs extra (MathJax 3.2.2) and are added to the build as generated files
  under ``assets/mathjax/``, so formulas render offline and behind a firewall, and no copy
  of MathJax lives in the repository.
- The methods table of ``methods.md`` is generated from ``docs/methods.yml``: one entry
  per method, so a new method is one entry there.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

MATHJAX_DIST = "sphinx-mathjax-offline"
MATHJAX_PREFIX = "static/mathjax/"
MATHJAX_URI = "assets/mathjax/"
METHODS_DATA = Path(__file__).parent / "methods.yml"
METHODS_MARKER = "<!-- methods-table -->"

# The frameworks of the front-end columns, in the order the table shows them.
FRAMEWORKS = (
    ("numpy", "Any framework"),
    ("torch", "PyTorch"),
    ("jax", "JAX"),
    ("tensorflow", "TensorFlow / Keras"),
)


def _mathjax_files() -> list[tuple[str, Path]]:
    """(path below ``static/mathjax/``, absolute path) of every installed MathJax file."""
    try:
        dist = importlib.metadata.distribution(MATHJAX_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise PluginError(
            f"MathJax for the site comes from the '{MATHJAX_DIST}' package, which is not "
            "installed: install the docs extra (pip install -e '.[docs]', or run make docs)"
        ) from None
    found = []
    for entry in dist.files or ():
        path = str(entry).replace("\\", "/")
        _, sep, rel = path.partition(MATHJAX_PREFIX)
        if sep and rel:
            found.append((rel, Path(str(dist.locate_file(entry)))))
    if not any(rel == "tex-mml-chtml.js" for rel, _ in found):
        raise PluginError(
            f"the installed '{MATHJAX_DIST}' has no {MATHJAX_PREFIX}tex-mml-chtml.js: "
            "reinstall the docs extra (pip install --force-reinstall -e '.[docs]')"
        )
    return found


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add MathJax to the build, as if it were under ``docs/assets/mathjax/``."""
    for rel, path in _mathjax_files():
        files.append(File.generated(config, MATHJAX_URI + rel, abs_src_path=str(path)))
    return files


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def _names(names: list[str] | None, short: bool = False) -> str:
    # Dotted names are code (the last component only, in the overview); anything else
    # ("adc= of every loss module") is a note in words.
    def show(name: str) -> str:
        if not re.fullmatch(r"[\w.]+", name):
            return name
        text = name.rsplit(".", 1)[-1] if short else name
        if name.startswith("glf_losses.backends."):
            # Made from the registry when first imported, so not in the API reference by
            # name; the framework's page documents the class they all are.
            return f"`{text}`"
        return f"[`{text}`][{name}]"

    return "<br>".join(show(name) for name in names) if names else "–"


def methods_table(methods: list[dict[str, Any]]) -> str:
    """Markdown of the methods page: two overview tables, then one section per method."""
    lines = [
        "| method | paper | official code | aligning part | constraining part |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        paper = _link(m["paper"]["cite"], m["paper"].get("url"))
        code = _link(m["code"]["name"], m["code"].get("url")) if m.get("code") else "–"
        lines.append(
            f"| [{m['name']}](#{m['id']}) | {paper} | {code} "
            f"| {m['glf']['align']} | {m['glf']['constrain']} |"
        )
    lines += ["", "Front-ends per framework (the full names are in each method's section):", ""]
    lines.append("| method | " + " | ".join(label for _, label in FRAMEWORKS) + " | `glf-train` |")
    lines.append("|---" * (len(FRAMEWORKS) + 2) + "|")
    for m in methods:
        cells = [_names(m["frontends"].get(key), short=True) for key, _ in FRAMEWORKS]
        trainer = f"`{m['trainer']}`" if m.get("trainer") else "–"
        lines.append(f"| [{m['name']}](#{m['id']}) | " + " | ".join(cells) + f" | {trainer} |")
    lines.append("")
    for m in methods:
        lines += [f"## {m['name']} {{#{m['id']}}}", "", m["summary"].strip(), ""]
        paper = _link(m["paper"]["cite"], m["paper"].get("url"))
        code = _link(m["code"]["name"], m["code"].get("url")) if m.get("code") else "none"
        lines += [f"Paper: {paper}. Official code: {code}.", ""]
        lines += ["| setting | default | note |", "|---|---|---|"]
        for d in m.get("defaults", []):
            lines.append(f"| `{d['name']}` | `{d['value']}` | {d.get('note', '')} |")
        lines += ["", "| framework | front-end |", "|---|---|"]
        for key, label in FRAMEWORKS:
            lines.append(f"| {label} | {_names(m['frontends'].get(key))} |")
        trainer = f"`{m['trainer']}`" if m.get("trainer") else "–"
        lines += [f"| `glf-train` | {trainer} |", ""]
        if m.get("example"):
            lines += ["```python", m["example"].rstrip(), "```", ""]
    return "\n".join(lines)


def load_methods(path: Path = METHODS_DATA) -> list[dict[str, Any]]:
    """The entries of ``docs/methods.yml``, checked for the keys the table needs."""
    methods = yaml.safe_load(path.read_text(encoding="utf-8"))["methods"]
    required = ("id", "name", "summary", "paper", "glf", "frontends")
    for m in methods:
        missing = [key for key in required if key not in m]
        if missing:
            raise PluginError(
                f"{path.name}: method {m.get('name', m)!r} lacks {missing}: add them "
                "(see the first entry for the expected keys)"
            )
        if not re.fullmatch(r"[a-z0-9-]+", m["id"]):
            raise PluginError(
                f"{path.name}: id {m['id']!r} must be lower-case letters, digits and '-' "
                "(it is the section's anchor): rename it"
            )
    return methods


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill the methods page's marker with the table built from ``docs/methods.yml``."""
    if METHODS_MARKER in markdown:
        markdown = markdown.replace(METHODS_MARKER, methods_table(load_methods()))
    return markdown
