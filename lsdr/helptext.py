"""Help pages as plain prose: docstring paragraphs reflowed before Typer renders them.

Typer's rich help keeps a docstring's single line breaks, so a paragraph wrapped at 100
columns in the source comes out broken mid-sentence at the terminal's width.  :func:`tidy`
joins each paragraph's lines once, after every command is registered.
"""

from __future__ import annotations

import inspect

import typer


def reflow(text: str) -> str:
    """Each blank-line-separated paragraph on one line; the paragraphs kept apart."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def tidy(app: typer.Typer) -> None:
    """Reflow the help of every command of ``app`` and of its sub-apps, recursively."""
    for info in app.registered_commands:
        doc = info.help if isinstance(info.help, str) else inspect.getdoc(info.callback)
        if doc:
            info.help = reflow(doc)
    for group in app.registered_groups:
        if isinstance(group.typer_instance, typer.Typer):
            tidy(group.typer_instance)
