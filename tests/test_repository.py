"""House rules that hold for the whole tree: the README points only inside the repository, and no
source file grows past the size where it stops having one purpose (split it by algorithm)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_SOURCE_LINES = 420  # "about 400": a file past this is split by algorithm, never by hardware flag
SOURCE_SUFFIXES = {".py", ".cpp", ".h", ".cu", ".cuh"}


def _markdown_links(path: pathlib.Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(r"`(\.\./[^`]+)`", text)


def test_readme_links_stay_inside_the_repository():
    for page in (ROOT / "README.md", ROOT / "docs" / "ARCHITECTURE.md"):
        assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
        for target in _markdown_links(page):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{page.name} points outside the repository: {target}"
            assert resolved.exists(), f"{page.name} links a missing file: {target}"


def test_no_source_file_is_past_the_size_limit():
    too_long = []
    for folder in ("csrc", "llmkernels"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and path.is_file():
                lines = path.read_text(encoding="utf-8").count("\n")
                if lines > MAX_SOURCE_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, "split these by algorithm: " + "; ".join(too_long)
