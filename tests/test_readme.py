"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

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
    runtime = "requirements-runtime.txt"
    assert installed == {p.name for p in ROOT.glob("requirements*.txt")} - {runtime}
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
