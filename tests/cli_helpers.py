"""Reading typer's output in CLI tests: usage errors come in a rich box wrapped at the terminal width."""
from __future__ import annotations

import re


def plain(output: str) -> str:
    """`output` with the box drawing removed and all whitespace runs (line wraps included) made one space."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())
