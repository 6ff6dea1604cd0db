"""Where the bundled project lives: the journey library, its templates, catalog, configuration
and example events.

A wheel carries them inside the package (``postflow/bundled/``, see the force-include in
``pyproject.toml``); an editable install or a checkout reads the repository's own files, so a
journey added to ``journeys/`` is available to ``postflow init`` and ``postflow demo`` at once,
without a rebuild.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["bundled_project"]


def bundled_project() -> Path:
    """The bundled project's root: the one shipped inside the package (a wheel install), else
    the repository's (an editable install or a checkout). Raises FileNotFoundError when
    neither is there, which only a broken installation does."""
    inside = Path(__file__).resolve().parent / "bundled"
    if (inside / "journeys").is_dir():
        return inside
    repo = Path(__file__).resolve().parents[2]
    if (repo / "journeys").is_dir() and (repo / "examples").is_dir():
        return repo
    raise FileNotFoundError("the bundled example project is missing from this installation")
