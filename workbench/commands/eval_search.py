"""The search rows of `workbench eval --search`: the accuracy-compute frontier (`llm_core.search.frontier`)
as a table and a terminal plot of accuracy against tokens per question; `workbench report` shows the same."""
from __future__ import annotations

from typing import Any, Sequence

import typer

from llm_core.errors import GenerationError
from llm_core.search import frontier, rows_to_dicts
from workbench.plotting import frontier_spec, render_text


def parse_list(option: str, text: str, kind: type) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GenerationError(f"{option}: expected comma-separated {kind.__name__}s, got {text!r}") from None
    if not values:
        raise GenerationError(f"{option}: empty list")
    return values


def run_search(engine: Any, entries: Sequence[dict[str, Any]], temperatures: str, ns: Sequence[int], widths: str,
               max_new_tokens: int, seed: int, scorers: Sequence[str] = ("verifier",)) -> list[dict[str, Any]]:
    """The frontier rows as dicts (for evaluation.json), with progress on stderr."""
    rows = frontier(engine, entries, parse_list("--temperatures", temperatures, float), ns,
                    parse_list("--widths", widths, int), max_new_tokens, seed, scorer=list(scorers),
                    progress=lambda done, total: (done % 10 == 0 or done == total)
                    and typer.echo(f"  search {done}/{total} problems", err=True))
    return rows_to_dicts(rows)


def search_lines(rows: Sequence[dict[str, Any]], markdown: bool = False) -> list[str]:
    """The table (plain text, or Markdown for the report) and the plot."""
    def fmt(r: dict[str, Any]) -> tuple[str, ...]:
        passed = f"{r['pass_at_n']:.1%}" if r.get("pass_at_n") is not None else "-"
        return (r["label"], str(r["n"]), f"{r['accuracy']:.1%}", passed, f"{r['tokens_per_question']:.1f}",
                f"{r['seconds_per_question']:.2f}")

    head = ("method", "N/B", "accuracy", "pass@N", "tokens/question", "s/question")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(fmt(r)) + " |" for r in rows]
    else:
        widths = (34, 5, 10, 9, 17, 12)
        lines = ["".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
        lines += ["".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(fmt(r), widths)))
                  for r in rows]
    plot = render_text(frontier_spec(rows), 80, 20, False)
    return lines + ([""] + (["```", plot, "```"] if markdown else [plot]))
