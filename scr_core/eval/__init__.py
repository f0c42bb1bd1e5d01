"""Benchmark readers and scorers: POPE, CHAIR, AMBER, MME, HallusionBench, plus analysis and reports.

Why: the runner's loop is "read samples -> generate text with a model -> score"; every reader
here returns plain dataclasses with an ``image_path``, every scorer takes the model's raw
answers as a list (in sample order) or a dict (keyed by sample id). Nothing in this package
imports torch or needs a network; missing or corrupt data files raise
``scr_core.errors.DataError`` naming the file.

Modules: ``parsing`` (yes/no rules), ``binary`` (confusion metrics), ``pope``, ``coco`` +
``chair`` + ``cider``, ``amber``, ``mme``, ``hallusionbench``, ``analysis`` (entropy vs HR),
``report`` (markdown tables), ``text`` (tokeniser and noun lemmatisers), ``wordnet`` (WordNet 3.0
for NLTK, offline), ``files``, ``answers``. Every default reproduces the benchmark's official
script (``tests/eval/fixtures/golden/GOLDEN.md``); lenient options are named in the scores.
Import the submodule you need; this package imports none of them eagerly.
"""
