"""Every ``--help`` page of the real ``lsdr`` command: plain text, true, and each one runs.

The pages are read as a user reads them (``lsdr … --help`` in a subprocess, no terminal); the
commands they list are taken from the pages themselves, not from the code.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

NOT_YET = ("still to come", "later issue", "coming soon", "not yet", "todo")
"""Phrases of help that promises instead of describing."""
EXAMPLE_PAGES = (("run",), ("demo",), ("status",), ("server",), ("bricks",))
"""Pages that must show one example command."""


def help_page(*words: str) -> subprocess.CompletedProcess[str]:
    """``lsdr WORDS --help`` as a user runs it."""
    command = [sys.executable, "-m", "lsdr", *words, "--help"]
    env = {"COLUMNS": "100", "TERM": "dumb", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=120
    )


def listed_commands(page: str) -> list[str]:
    """The command names in a page's ``Commands`` panel (first word of each entry line)."""
    names: list[str] = []
    inside = False
    for line in page.splitlines():
        if "Commands" in line and line.lstrip().startswith(("╭", "+", "-")):
            inside = True
            continue
        if inside and line.lstrip().startswith(("╰", "+")):
            break
        if inside:
            match = re.match(r"^\W*([a-z][a-z-]*)\s{2,}\S", line)
            if match:
                names.append(match.group(1))
    return names


def all_pages() -> dict[tuple[str, ...], str]:
    """Every page reachable from ``lsdr --help`` through the Commands panels."""
    pages: dict[tuple[str, ...], str] = {}
    todo: list[tuple[str, ...]] = [()]
    while todo:
        words = todo.pop()
        done = help_page(*words)
        assert done.returncode == 0, (words, done.stderr[-500:])
        pages[words] = done.stdout
        todo += [(*words, name) for name in listed_commands(done.stdout)]
    return pages


@pytest.fixture(scope="module")
def pages() -> dict[tuple[str, ...], str]:
    """All help pages, read once."""
    return all_pages()


def test_every_listed_command_has_a_help_page(pages: dict[tuple[str, ...], str]):
    """The tree of pages covers the commands a release needs (each ran with status 0)."""
    needed = [("run", "release"), ("run", "tractor"), ("run", "publish"), ("demo",), ("status",)]
    needed += [("server", "up"), ("bricks", "at"), ("ledger", "rebuild")]
    for expected in needed:
        assert expected in pages, expected
    assert len(pages) >= 35


def test_help_is_plain_text(pages: dict[tuple[str, ...], str]):
    """No reStructuredText literals or roles, and no promises of what is not there."""
    for words, page in pages.items():
        assert "``" not in page, words
        assert not re.search(r":(func|class|data|meth|mod):`", page), words
        lowered = page.lower()
        assert not any(phrase in lowered for phrase in NOT_YET), (words, page)


def test_commands_named_in_help_exist(pages: dict[tuple[str, ...], str]):
    """Every ``lsdr …`` command line quoted in any page names commands that exist.

    Its words are followed down the Commands panels: the first must be a command of
    ``lsdr``, and after a group (``run``, ``server``, …) the next must be one of the group's.
    """
    for words, page in pages.items():
        flat = " ".join(line.strip(" │|") for line in page.splitlines())
        for quoted in re.findall(r"\blsdr((?: [a-z][a-z-]+)+)", flat):
            node: tuple[str, ...] = ()
            for word in quoted.split():
                below = listed_commands(pages[node])
                if not below:
                    break
                assert word in below, (words, f"lsdr{quoted}")
                node = (*node, word)


@pytest.mark.parametrize("words", EXAMPLE_PAGES, ids=lambda w: " ".join(w))
def test_main_pages_show_an_example(words: tuple[str, ...], pages: dict[tuple[str, ...], str]):
    """run, demo, status, server and bricks each show an example command line of their own."""
    page = pages[words]
    assert "Example" in page, words
    flat = " ".join(line.strip(" │|") for line in page.splitlines())
    assert re.search(rf"\blsdr {' '.join(words)}\b", flat), words
