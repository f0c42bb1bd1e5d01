"""Command line: run the benchmark, or render its report from a JSON.

    python -m bench [--quick] [--model DIR] [--device cpu|cuda] [--json out.json]
    python -m bench --report out.json [--markdown out.md] [--plot out.png]

A run prints progress to stderr and the report's tables to stdout. The report writes the
markdown and the PNG beside the JSON by default (derived files: always rewritten); a run's
JSON is never overwritten unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .settings import SECTIONS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="SCR performance benchmarks.")
    p.add_argument("--report", metavar="JSON", help="render the markdown tables and the PNG plot of a run's JSON")
    p.add_argument("--markdown", metavar="PATH", help="with --report: markdown output (default: beside the JSON)")
    p.add_argument("--plot", metavar="PATH", help="with --report: PNG output (default: beside the JSON)")
    p.add_argument("--quick", action="store_true",
                   help="tiny model, few tokens: checks that it runs, measures nothing worth quoting")
    p.add_argument("--model", metavar="DIR", help="a checkpoint folder (save_pretrained) instead of the random model")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                   help="default: float32 on CPU, float16 on a GPU")
    p.add_argument("--json", metavar="PATH", help="write the results here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick mode: 1)")
    p.add_argument("--repeats", type=int, help="timed rounds per measurement (default 6; quick mode 5)")
    p.add_argument("--lengths", type=_ints, help="forced new-token counts, e.g. 16,100,256")
    p.add_argument("--batches", type=_ints, help="batch sizes, e.g. 1,4")
    p.add_argument("--sections", type=_names, help=f"a subset of {','.join(SECTIONS)}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.report:
            return report(args)
        return run(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    from scr_core import SCRError, check_new_file, write_atomically

    from . import report as markdown
    from . import runner, settings

    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, not {args.device!r}")
    try:
        out = check_new_file(args.json, [".json"], overwrite=args.overwrite) if args.json else None
        plan = settings.make(args.quick, args.device, model=args.model, dtype=args.dtype, threads=args.threads,
                             repeats=args.repeats, lengths=args.lengths, batches=args.batches, sections=args.sections)
        doc = runner.run(plan)
    except SCRError as err:
        raise ValueError(str(err)) from None
    if out:
        write_atomically(out, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
        print(f"wrote {out}; render it with: python -m bench --report {out}", file=sys.stderr)
    print(markdown.render(doc))
    return 0


def report(args) -> int:
    from . import plot, schema
    from . import report as markdown

    source = Path(args.report)
    try:
        doc = json.loads(source.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is not JSON: {err}") from None
    missing = schema.problems(doc)
    if missing:
        raise ValueError(f"{source} lacks what the report needs: " + "; ".join(missing[:10])
                         + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""))
    md = Path(args.markdown) if args.markdown else source.with_suffix(".md")
    png = None
    if doc.get("end_to_end") or doc.get("growth"):  # what the plot draws; a run of other sections has none
        png = Path(args.plot) if args.plot else source.with_suffix(".png")
        plot.save(doc, png)
    text = markdown.render(doc, plot_name=png.name if png else None)
    md.write_text(text)
    print(text)
    print(f"wrote {md}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    return names
