"""House rules for the notebooks' text: no tracker or revision words in markdown, at most 3,000
words of markdown a notebook, introductions under 150 words, and no function defined in a cell."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
MAX_WORDS = 3000
MAX_INTRO_WORDS = 150
MAX_TOTAL_WORDS = 22_000       # all eleven notebooks together
TRACKER = re.compile(r"\b(issues?|previous version|this revision|earlier version|before this revision|"
                     r"revision history|session|ticket|TODO)\b", re.IGNORECASE)


def cells(path: Path, kind: str) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def words(text: str) -> int:
    return len(re.findall(r"\S+", text))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_tracker_or_revision_words(path):
    hits = [m.group(0) for text in cells(path, "markdown") for m in TRACKER.finditer(text)]
    assert not hits, f"{path.name}: tracker or revision words in markdown: {hits}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_markdown_word_budget(path):
    total = sum(words(t) for t in cells(path, "markdown"))
    # the introduction's prose: the table of sheet items it carries is counted in the total only
    intro = words("\n".join(line for line in cells(path, "markdown")[0].splitlines() if not line.startswith("|")))
    assert total <= MAX_WORDS, f"{path.name}: {total} words of markdown (at most {MAX_WORDS})"
    assert intro < MAX_INTRO_WORDS, f"{path.name}: introduction of {intro} words besides its table"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_function_defined_in_a_cell(path):
    defined = [line.strip() for text in cells(path, "code") for line in text.splitlines()
               if re.match(r"\s*(def|class)\s", line)]
    assert not defined, f"{path.name}: functions defined in a notebook: {defined}"


def test_total_markdown_word_budget():
    total = sum(words(t) for path in NOTEBOOKS for t in cells(path, "markdown"))
    assert total <= MAX_TOTAL_WORDS, f"{total} words of markdown in all notebooks (at most {MAX_TOTAL_WORDS})"


def test_the_checker_finds_tracker_words():
    assert TRACKER.search("as the previous version of this notebook showed")
    assert TRACKER.search("see issue 11")
    assert not TRACKER.search("the prior's mass is an atypical region")
