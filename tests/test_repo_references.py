"""A clone can follow every reference (issue 19): no tracked file points outside the repository, every
`method.md <section>` cited in code names a section of docs/method.md, and every relative link in the README,
CONTRIBUTING.md and docs/ reaches a file (and heading) that exists.

Tracked files come from `git ls-files`; outside a git checkout the tree is walked instead (without .git, .venv,
.space and caches), so the check never silently passes on nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Assembled from parts so this file does not match itself.
OUTSIDE = [re.compile(p) for p in (r"\.\./" + "shared", "/" + r"work/", r"\bstack" + r"\.md\b", r"\bstack " + "notes",
                                   "shared/" + "docs")]
SKIP_DIRS = {".git", ".venv", ".space", "__pycache__", ".pytest_cache", "node_modules"}
SECTION_REF = re.compile(r"method\.md,? (?:sections? )?(\d+(?:\.\d+)?)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files(root: Path = ROOT) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
        return [root / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in root.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts)]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None  # binary (figures) or deleted in the work tree


def outside_references(files: list[Path], root: Path = ROOT) -> list[str]:
    """`file:line: text` for every line that names a path outside the repository."""
    found = []
    for path in files:
        for number, line in enumerate((text_of(path) or "").splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()[:120]}")
    return found


def method_sections(text: str) -> set[str]:
    """Section numbers of docs/method.md's headings: '## 3. Phase 2 ...' -> '3', '### 2.4 Clustering' -> '2.4'."""
    return {m.group(1).rstrip(".") for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE)}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """Relative links of a markdown file whose target file, or heading anchor, does not exist."""
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        name, _, anchor = target.partition("#")
        dest = (doc.parent / name).resolve() if name else doc
        if not dest.exists() or root not in (dest, *dest.parents):
            broken.append(f"{doc.relative_to(root)}: {target}")
        elif anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.MULTILINE)
            if anchor not in {slug(h) for h in headings}:
                broken.append(f"{doc.relative_to(root)}: {target} (no such heading)")
    return broken


def test_no_tracked_file_names_a_path_outside_the_repository():
    files = tracked_files()
    assert len(files) > 100 and ROOT / "README.md" in files
    assert outside_references(files) == []


def test_the_check_catches_a_reference_outside_the_repository(tmp_path):
    bad = tmp_path / "mod.py"
    bad.write_text('"""See ../' + 'shared/' + 'docs/method.md."""\nx = 1  # as the stack' + '.md notes say\n')
    assert [line.split(":")[1] for line in outside_references([bad], tmp_path)] == ["1", "2"]


def test_every_method_section_cited_in_the_code_exists():
    sections = method_sections((ROOT / "docs" / "method.md").read_text())
    assert {"1", "2", "2.1", "2.5", "3", "4", "5"} <= sections
    cited = {(str(p.relative_to(ROOT)), m.group(1)) for p in tracked_files() if p.suffix in (".py", ".md", ".yaml")
             for m in SECTION_REF.finditer(text_of(p) or "")}
    assert len(cited) > 10
    assert sorted((file, number) for file, number in cited if number not in sections) == []


def test_every_relative_link_of_the_docs_reaches_a_file_and_heading():
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert all(d.is_file() for d in docs)
    assert [b for d in docs for b in broken_links(d)] == []


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Two words\n\n[ok](#two-words) [gone](b.md) [nohead](#three)\n")
    assert broken_links(tmp_path / "a.md", tmp_path) == ["a.md: b.md", "a.md: #three (no such heading)"]
