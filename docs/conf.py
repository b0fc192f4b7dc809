"""Sphinx configuration of deltaprop's documentation site.

Build it (warnings are errors) with::

    python -m sphinx -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import deltaprop

# docs/_ext: the speed page's figures, drawn from bench/results/speed.csv at each build.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "deltaprop"
author = "the deltaprop developers"
copyright = "the deltaprop developers"  # noqa: A001 - Sphinx's name
version = release = deltaprop.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "bench_figures",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = [
    "_build",
    "_ext",
    "_generated",
    "README.md",
    "examples",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
]
root_doc = "index"
# Every cross-reference must resolve (a broken one fails the -W build), but for these:
# the re-exported ModelFormatError is documented once, as deltaprop.ModelFormatError (the
# submodules' listings name it without a page of their own), and numpydoc links the
# estimators' Attributes entries coefs_ and intercepts_, properties of their private base.
nitpicky = True
nitpick_ignore = [
    ("py:obj", "deltaprop.io.ModelFormatError"),
    ("py:obj", "deltaprop.onnx.ModelFormatError"),
    ("py:obj", "coefs_"),
    ("py:obj", "intercepts_"),
]

# MyST: $...$ maths, ::: fences, and headings up to level 3 get anchors for [](page.md#x).
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()  # ruff enforces the docstrings' form

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
}
# The build runs offline as often as online: no inventory fetched, references stay text.
if os.environ.get("DELTAPROP_DOCS_OFFLINE", "1") == "1":
    intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"deltaprop {release}"
html_theme_options = {
    # The search field as an icon at the end, and four page names before "More": with the
    # guide's full list and the wide field, the header wrapped onto a second row on a
    # 1366-pixel laptop screen.
    "navbar_persistent": [],
    "navbar_end": ["search-button", "navbar-icon-links"],
    "header_links_before_dropdown": 4,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
# The guide's pages are the header's own entries: their section navigation would be an
# empty column beside the text.
html_sidebars = {"guide/*": [], "changelog": []}
html_static_path = ["_static/css"]
html_css_files = ["narrow-screens.css"]
autosummary_ignore_module_all = False


def _skip_member(app, what, name, obj, skip, options):
    """Leave out what is documented elsewhere or is scikit-learn's, not deltaprop's.

    A submodule re-exporting a name of the package (``deltaprop.io.ModelFormatError``) would
    describe the object twice; scikit-learn's generated ``set_*_request`` methods carry
    scikit-learn's cross-references, which resolve only in its own documentation.
    """
    if what == "module" and getattr(obj, "__name__", None) == "ModelFormatError":
        return True
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    """Connect the member filter."""
    app.connect("autodoc-skip-member", _skip_member)
