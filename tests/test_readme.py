"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.startswith("python3 -m venv .venv") and "pytest" in ci_command
    assert ci_command in readme


def test_readme_starts_with_the_demo_command():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n")[1].split("\n```")[0]
    assert first_block.endswith("python -m scr_core demo")
