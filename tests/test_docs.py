"""The documentation site builds with warnings as errors (``mkdocs build --strict``).

A broken cross-reference, a docstring section mkdocstrings cannot parse (an ``Args:`` entry
naming no parameter of the signature), a guide page missing from the navigation or a link to a
page that does not exist fails this test. The build is offline: no fonts, no remote inventories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # 20 to 45 s on 2 busy cores: it imports and renders the whole package


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is part of dev")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stdout}\n{out.stderr}"
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    expected = {"index.html", "guide.html", "distributed.html", "architecture.html", "api/tunelab.html",
                "api/study.html", "api/samplers.html", "api/pruners.html", "api/torch.html", "api/recipe.html"}
    assert expected <= pages, f"pages missing from the site: {sorted(expected - pages)}"
    study = (site / "api" / "study.html").read_text()
    # The reference is generated from the docstrings, their examples included, and the reST roles
    # of the docstrings are links, not ":class:" text.
    assert 'id="tunelab.study.create_study"' in study
    assert "&gt;&gt;&gt;" in study and "create_study" in study
    assert ":class:" not in study and ":meth:" not in study
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()


def test_the_api_index_lists_every_public_name() -> None:
    """docs/api/tunelab.md says it lists every public name of tunelab: a name added to __all__ must appear."""
    import re

    import tunelab

    listed = set(re.findall(r"\[(\w+)\]\[tunelab\.", (ROOT / "docs" / "api" / "tunelab.md").read_text()))
    assert sorted(set(tunelab.__all__) - listed) == []
