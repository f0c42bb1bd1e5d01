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
