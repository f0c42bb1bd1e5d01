"""What the pack adds to a ComfyUI environment: ``python -m bench.footprint [--json out.json]``.

Why: ``requirements.txt`` goes into a user's shared ComfyUI venv (ComfyUI-Manager installs it), so its
size is a cost every user pays; the extras are paid only by those who use them. This builds a fresh venv
with ComfyUI's requirements (without its torch lines, plus ``requests``) and torch/torchvision at CI's
pins, then installs ``requirements.txt``, ``requirements-onnx.txt``, ``requirements-eval.txt`` and
``requirements-ray.txt`` one after the other (``-c constraints/ci.txt``, the versions CI tests) and
reports, per step, the MB its site-packages grew by (apparent file sizes, 1 MB = 10^6 bytes) and the
packages it added. Needs the ComfyUI source tree (``COMFYUI_DIR``, default ``../shared/comfyui``), a
package index, ~7 GB of disk and a few minutes; the venv is deleted afterwards unless ``--keep``.
Imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH = ("torch==2.14.1", "torchvision==0.29.1")  # CI's pins (constraints/ci.txt)
STEPS = (("requirements.txt", "requirements.txt"), ("onnx extra", "requirements-onnx.txt"),
         ("eval extra", "requirements-eval.txt"), ("ray extra", "requirements-ray.txt"))


def comfyui_requirements(comfy: Path, into: Path) -> Path:
    """ComfyUI's requirements.txt without its torch lines, plus requests (as .ci/run installs them)."""
    lines = [line for line in (comfy / "requirements.txt").read_text().splitlines()
             if not re.match(r"^(torch|torchvision|torchaudio)([<>=~ ]|$)", line)]
    out = into / "comfyui-requirements.txt"
    out.write_text("\n".join([*lines, "requests", ""]))
    return out


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def measure(venv: Path) -> tuple[int, set[str]]:
    """(bytes under site-packages, the installed distributions by name)."""
    root = site_packages(venv)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())
    names = {p.name.split("-")[0].lower().replace("_", "-") for p in root.glob("*.dist-info")}
    return size, names


def pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir",
                    "--disable-pip-version-check", *args], check=True)


def run(comfy: Path, work: Path) -> dict:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = ("-c", str(ROOT / "constraints" / "ci.txt"))
    print("[footprint] ComfyUI's requirements and torch", file=sys.stderr, flush=True)
    pip(venv, "-r", str(comfyui_requirements(comfy, work)), *TORCH, *constraints)
    size, names = measure(venv)
    report = {"base": {"what": "ComfyUI's requirements + requests + " + " ".join(TORCH),
                       "mb": round(size / 1e6), "packages": len(names)}, "steps": []}
    for label, file in STEPS:
        print(f"[footprint] + {file}", file=sys.stderr, flush=True)
        pip(venv, "-r", str(ROOT / file), *constraints)
        after, now = measure(venv)
        report["steps"].append({"what": label, "file": file, "added_mb": round((after - size) / 1e6),
                                "added_packages": sorted(now - names)})
        size, names = after, now
    return report


def markdown(report: dict) -> str:
    rows = ["| installed on top | MB added | packages added |", "|---|---:|---|"]
    for step in report["steps"]:
        rows.append(f"| `{step['file']}` | {step['added_mb']} | {len(step['added_packages'])}: "
                    f"{', '.join(step['added_packages']) or '-'} |")
    base = report["base"]
    return "\n".join([*rows, "", f"Base venv: {base['what']}: {base['mb']} MB, {base['packages']} packages."])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", type=Path,
                   default=Path(os.environ.get("COMFYUI_DIR", ROOT.parent / "shared" / "comfyui")),
                   help="ComfyUI source tree (default: $COMFYUI_DIR or ../shared/comfyui)")
    p.add_argument("--work", type=Path, default=None, help="folder for the venv (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the venv")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if not (args.comfyui / "requirements.txt").is_file():
        print(f"error: no ComfyUI source tree at {args.comfyui} (set COMFYUI_DIR or --comfyui)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="scr-footprint-", dir=args.work))
    try:
        report = run(args.comfyui, work)
    except subprocess.CalledProcessError as err:
        print(f"error: pip failed ({err}); the venv is in {work}" if args.keep else f"error: pip failed ({err})",
              file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
