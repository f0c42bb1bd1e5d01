"""requirements.txt is what captioning needs; the ONNX stack, the benchmark scorers and the Ray engine are
extras (requirements-onnx.txt, requirements-eval.txt, requirements-ray.txt). Captioning runs where the
extras are missing, a command that needs one says in one line which file to install, and the runtime runs on
either onnxruntime wheel."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from PIL import Image

from scr_core.extras import EXTRAS
from tests.extras import HIDDEN, ROOT, need_extra, without_extras

MOVED = {"onnx", "onnxscript", "onnx-ir", "onnxruntime", "onnxruntime-gpu", "nltk", "wn", "pycocotools",
         "lemminflect", "scipy", "ray"}
CPU_WHEEL = "onnxruntime==1.31.1"


def requirements(file: str) -> list[Requirement]:
    lines = (ROOT / file).read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def names(reqs) -> set[str]:
    return {re.sub(r"[-_.]+", "-", r.name).lower() for r in reqs}


def run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())


# -- the files ---------------------------------------------------------------------------------
def test_requirements_txt_pulls_none_of_the_moved_packages():
    core = requirements("requirements.txt")
    assert not names(core) & MOVED
    assert set().union(*(names(requirements(file)) for file, _ in EXTRAS.values())) >= MOVED
    # nor through a dependency: the closure of requirements.txt over what is installed here
    seen, todo = set(), [r for r in core if r.marker is None or r.marker.evaluate()]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dependencies = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [d for d in map(Requirement, dependencies) if d.marker is None or d.marker.evaluate({"extra": ""})]
    assert {"torch", "transformers", "matplotlib"} <= seen
    assert not seen & MOVED, sorted(seen & MOVED)


def test_pyproject_mirrors_the_requirements_files():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI's)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    as_set = lambda reqs: {str(r) for r in reqs}  # noqa: E731
    assert as_set(map(Requirement, project["dependencies"])) == as_set(requirements("requirements.txt"))
    extras = project["optional-dependencies"]
    for extra, (file, _) in EXTRAS.items():
        assert as_set(map(Requirement, extras[extra])) == as_set(requirements(file)), extra
    assert as_set(map(Requirement, extras["test"])) == as_set(requirements("requirements-test.txt"))


# -- without the extras --------------------------------------------------------------------------
def test_the_hiding_works():
    out = run("-c", "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in sys.argv[1:]))",
              *HIDDEN, env=without_extras())
    assert out.returncode == 0, out.stderr


def test_caption_and_diagnose_run_without_the_extras(tiny_llava_dir, tmp_path):
    image = tmp_path / "scene.png"
    Image.new("RGB", (120, 90), (30, 30, 200)).save(image)
    out = run("-m", "scr_core", "caption", image, "--model", tiny_llava_dir, "--k", "4", "--max-new-tokens", "4",
              "--json", env=without_extras())
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["text"] and result["timings"]["new_tokens"] == 4 and result["plan"]["grids"]
    heatmap = tmp_path / "heat.png"
    diag = run("-m", "scr_core", "diagnose", image, "--model", tiny_llava_dir, "--heatmap", heatmap,
               env=without_extras())
    assert diag.returncode == 0, diag.stderr
    assert "entropy:" in diag.stdout and Image.open(heatmap).size[0] == 512
    listed = run("-m", "scr_core", "--help", env=without_extras())
    assert listed.returncode == 0 and "caption-folder" in listed.stdout


def test_caption_folder_runs_without_the_extras(tiny_llava_dir, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(folder / f"p{i}.png")
    out = run("-m", "scr_core", "caption-folder", folder, "--out", tmp_path / "captions.jsonl", "--model",
              tiny_llava_dir, "--max-new-tokens", "3", "--k", "4", env=without_extras())
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "captions.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("command, file", [
    (["-m", "scr_core", "eval", "pope", "--data", "{tmp}", "--out", "{tmp}/run"], "requirements-eval.txt"),
    (["-m", "scr_core", "compare", "{tmp}/a", "{tmp}/b"], "requirements-eval.txt"),
    (["-m", "scr_core", "calibrate", "--data", "{tmp}", "--out", "{tmp}/cal"], "requirements-eval.txt"),
    (["-m", "export.onnx", "--out", "{tmp}/onnx"], "requirements-onnx.txt"),
    (["-m", "export.run", "--model", "{tmp}", "{tmp}/image.png"], "requirements-onnx.txt"),
    (["-m", "scr_core", "caption-folder", "{tmp}", "--out", "{tmp}/c.jsonl", "--engine", "ray"],
     "requirements-ray.txt"),
], ids=["eval", "compare", "calibrate", "export.onnx", "export.run", "ray"])
def test_a_missing_extra_is_one_line_naming_its_file(command, file, tmp_path):
    out = run(*[part.format(tmp=tmp_path) for part in command], env=without_extras())
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert f"pip install -r {ROOT / file}" in lines[0] and "not installed" in lines[0]
    assert not list(tmp_path.iterdir())  # refused before anything was written


# -- the runtime on the CPU onnxruntime wheel ---------------------------------------------------------
@pytest.fixture(scope="session")
def cpu_wheel(tmp_path_factory):
    """The CPU ``onnxruntime`` wheel in a folder of its own (its dependencies are onnxruntime-gpu's, already
    here); put first on PYTHONPATH it shadows the installed wheel, as if it were the only one."""
    need_extra("onnx")
    target = tmp_path_factory.mktemp("onnxruntime-cpu")
    install = run("-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", "--target", target,
                  CPU_WHEEL, timeout=600)
    if install.returncode != 0:
        pytest.fail(f"pip install {CPU_WHEEL} failed: {install.stderr[-2000:]}")
    return target


@pytest.fixture(scope="session")
def exported(tiny_llava_dir, tmp_path_factory):
    need_extra("onnx")
    from export.exporter import ExportOptions, export

    return export(ExportOptions(model=tiny_llava_dir, out=tmp_path_factory.mktemp("onnx") / "llava", k=4))


PROBE = """
import json, sys, onnxruntime
from export.runtime import OnnxVLM
vlm = OnnxVLM(sys.argv[1], provider="auto")
result = vlm.caption(sys.argv[2], max_new_tokens=5)[0]
print(json.dumps({"file": onnxruntime.__file__, "device": onnxruntime.get_device(),
                  "available": onnxruntime.get_available_providers(), "sessions": vlm.providers,
                  "described": vlm.onnxruntime, "text": result.text, "ids": result.token_ids}))
"""


def test_the_runtime_runs_on_the_cpu_onnxruntime_wheel(cpu_wheel, exported, tmp_path):
    image = tmp_path / "scene.png"
    Image.new("RGB", (100, 80), (180, 120, 40)).save(image)
    path = os.pathsep.join(filter(None, [str(cpu_wheel), os.environ.get("PYTHONPATH")]))
    cpu = run("-c", PROBE, exported, image, env={**os.environ, "PYTHONPATH": path})
    assert cpu.returncode == 0, cpu.stderr
    on_cpu_wheel = json.loads(cpu.stdout)
    assert Path(on_cpu_wheel["file"]).is_relative_to(cpu_wheel)
    assert on_cpu_wheel["device"] == "CPU" and "CPUExecutionProvider" in on_cpu_wheel["available"]
    assert not [p for p in on_cpu_wheel["available"] if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    assert on_cpu_wheel["sessions"] == ["CPUExecutionProvider"]
    assert on_cpu_wheel["described"].startswith(f"onnxruntime {CPU_WHEEL.split('==')[1]}, providers ")
    assert "both onnxruntime and onnxruntime-gpu" not in cpu.stderr  # different folders: nothing overwritten
    installed = run("-c", PROBE, exported, image)  # the same caption with this venv's own wheel
    assert installed.returncode == 0, installed.stderr
    here = json.loads(installed.stdout)
    assert not Path(here["file"]).is_relative_to(cpu_wheel)
    assert here["ids"] == on_cpu_wheel["ids"] and on_cpu_wheel["text"]
