"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

from scr_core.extras import EXTRAS
from tests.extras import OWN_VENV

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    """The one line of .ci/run that builds .venv and runs pytest (the floor job follows it) is in the
    README, and it installs every requirements file (the full suite needs both extras) but the torch-free
    runtime's, which the runtime job installs alone into a venv of its own."""
    readme = (ROOT / "README.md").read_text()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_commands = [line for line in lines if line.startswith("python3 -m venv .venv &&")]
    assert len(ci_commands) == 1 and "pytest" in ci_commands[0]
    assert ci_commands[0] in readme
    installed = set(re.findall(r"-r (\S+)", ci_commands[0]))
    own_venv = {EXTRAS[extra][0] for extra in OWN_VENV}  # the harness extras: a CI block of their own
    runtime = "requirements-runtime.txt"  # a torch-free venv of its own
    assert installed == {p.name for p in ROOT.glob("requirements*.txt")} - own_venv - {runtime}
    harness = [line for line in lines if line.startswith(".venv-harness/bin/pip install")]
    assert own_venv <= set(re.findall(r"-r (\S+)", " ".join(harness)))
    runtime_job = [line for line in lines if line.startswith(".venv-runtime/bin/pip install")]
    assert len(runtime_job) == 1 and set(re.findall(r"-r (\S+)", runtime_job[0])) == {runtime}


def test_readme_starts_with_the_demo_command():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n")[1].split("\n```")[0]
    assert first_block.endswith("python -m scr_core demo")


def test_links_into_docs_resolve():
    """Every README link into docs/ and every relative link of a docs page names a file that exists."""
    import re

    link = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
    missing = []
    readme = (ROOT / "README.md").read_text()
    for target in link.findall(readme):
        if target.startswith("docs/"):
            path = target.split("#", 1)[0]
            if not (ROOT / path).exists():
                missing.append(f"README.md: {target}")
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target in link.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                missing.append(f"docs/{page.name}: {target}")
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def _block(readme: str, fence: str, containing: str) -> str:
    """The first fenced block of kind ``fence`` whose text holds ``containing``."""
    blocks = re.findall(rf"```{fence}\n(.*?)\n```", readme, re.S)
    return next(b for b in blocks if containing in b)


def test_the_comfyui_install_block_installs_what_ci_puts_beside_comfyui():
    """Followed alone, the README's ComfyUI install commands (usual and portable) give a server that starts:
    they install requirements.txt and requests, which .ci/run adds to ComfyUI's own requirements."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    beside_comfyui = re.findall(r"^echo (\S+) >> \.venv/comfyui-requirements\.txt$", ci, re.M)
    assert beside_comfyui == ["requests"]
    usual = _block(readme, "bash", "custom_nodes && git clone")
    portable = _block(readme, "bat", "python_embeded")
    for block in (usual, portable):
        line = next(line for line in block.splitlines() if "requirements.txt" in line)
        assert all(re.search(rf"\s{re.escape(name)}(\s|$)", line) for name in beside_comfyui), line


def test_the_test_command_says_how_to_run_the_skipped_comfyui_tests():
    readme = (ROOT / "README.md").read_text()
    after = " ".join(readme.split("Set up and run the tests:", 1)[1].split("## Contents", 1)[0].split())
    for needed in ("no ComfyUI source tree: set COMFYUI_DIR", "COMFYUI_DIR=", "chromium", "requests",
                   "comfyui-frontend-package==1.58.1", "v0.3.64", "SCR_REQUIRE_COMFYUI=1"):
        assert needed in after, needed
    skip = (ROOT / "tests" / "comfyui" / "conftest.py").read_text()
    assert "no ComfyUI source tree: set COMFYUI_DIR" in skip  # the README quotes the real skip reason


def test_the_first_command_says_what_it_downloads():
    readme = (ROOT / "README.md").read_text()
    top = readme.split("Set up and run the tests:", 1)[0]
    assert "no download)" not in top.replace("no model download", "")
    assert "CUDA libraries" in top and "https://download.pytorch.org/whl/cpu" in top


def test_the_python_example_says_how_to_install_the_package():
    readme = (ROOT / "README.md").read_text()
    python = readme.split("### Python", 1)[1].split("```python", 1)[0]
    assert "pip install ." in python and "pip install -e ." in python and "`scr`" in python
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"scr": "scr_core.cli:main"}
