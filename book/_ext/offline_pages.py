"""Pages that work offline: math typeset by a MathJax bundled with the build, no remote scripts.

- MathJax: the ``sphinx-mathjax-offline`` package carries MathJax 3 and copies it into
  ``_static/mathjax`` of every build; ``mathjax_path`` (in ``_config.yml``) points there.
- Thebe: Jupyter Book 1 always loads sphinx-thebe, which adds its inline configuration twice
  (a ``const`` declared twice is a console error on every page) and a remote script. This book
  has no live-code button, so its scripts are dropped from the pages.
"""

from __future__ import annotations

THEBE_MARKERS = ("THEBE_JS_URL", "sphinx-thebe.js", "thebe@")


def _is_thebe(script) -> bool:
    text = " ".join(str(part) for part in (getattr(script, "filename", ""), getattr(script, "attributes", {}).get("body", "")))
    return any(marker in text for marker in THEBE_MARKERS)


def drop_thebe_scripts(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = [script for script in context["script_files"] if not _is_thebe(script)]


def setup(app):
    app.setup_extension("sphinx-mathjax-offline")
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
