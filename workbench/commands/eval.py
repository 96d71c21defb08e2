"""`workbench eval`: accuracy against inference cost on the default experiment's held-out problems.

Direct answers and chain of thought (greedy), and majority vote with chain of thought at N = 1, 4, 8, 16
(self-consistency, Wang et al., 2022), each with the tokens generated per question; then greedy answers to
the neutral prompt (the bare problem: how often the model reasons unasked) and, on the paraphrase set
(templates never used in training), greedy direct, chain-of-thought and neutral answers. The table is printed
and saved as `evaluation.json` in the evaluated checkpoint (read by `workbench report` and the runs list).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from llm_core.engine import EVAL_GREEDY, RESPONSE_STOPS, Engine, SamplingParams
from llm_core.engine.engine import VOTE_TEMPERATURE
from llm_core.engine.reasoning import VoteResult, experiment_prompt
from llm_core.errors import DataError, GenerationError
from llm_core.training import load_checkpoint

from .options import checkpoint_option

EVAL_RESULTS = "evaluation.json"  # written into the evaluated checkpoint's step folder
_load = load_checkpoint  # the tests replace it with a tiny in-memory checkpoint


def _load_eval(path: Path, limit: int | None) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (build the default experiment first)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty list of problems")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("question"), str) or not isinstance(e.get("answer"), int):
            raise DataError(f"{path}: entry {i} needs 'question' (string) and 'answer' (integer)")
    return entries[:limit] if limit else entries


def vote_credit(result: VoteResult, truth: int) -> float:
    """1 for a correct winner; a tie containing the truth earns 1/len(tied) (a random tie-break's expectation)."""
    winners = result.winners
    return (1.0 / len(winners)) if truth in winners else 0.0


def evaluate(
    checkpoint: Path = checkpoint_option(),
    limit: int = typer.Option(None, "--limit", help="Only the first N problems."),
    data: Path = typer.Option(None, "--data", help="eval.json (default: llm_core/experiment/data/arith/eval.json)."),
    temperature: float = typer.Option(VOTE_TEMPERATURE, "--temperature", help="Sampling temperature for the votes."),
    ns: str = typer.Option("1,4,8,16", "--n", help="Vote sizes, comma separated."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Token budget per sample."),
    seed: int = typer.Option(0, "--seed", help="Base seed (question q uses seed + q)."),
    paraphrase: Path = typer.Option(
        None, "--paraphrase",
        help="Paraphrase set (default: llm_core/experiment/data/arith/eval_paraphrase.json when --data is not given).",
    ),
    search: bool = typer.Option(False, "--search", help="Add the search frontier: votes per temperature, beam "
                                "search, verifier best-of-N, weighted vote, pass@N, and its plot."),
    temperatures: str = typer.Option("0.3,0.5,0.8,1.0", "--temperatures", help="Vote temperatures for --search."),
    widths: str = typer.Option("2,4,8", "--widths", help="Beam widths for --search."),
    scorer: str = typer.Option("verifier", "--scorer", help="Scorers of the best-of-N and weighted-vote rows of "
                               "--search, comma separated: verifier, model:PATH (`workbench reward-model`)."),
) -> None:
    """Accuracy of direct answers, chain of thought and majority vote (N = 1, 4, 8, 16) with their token cost;
    neutral prompts and the paraphrase set greedy."""
    from llm_core.experiment import default_paths, is_step_by_step

    try:
        vote_sizes = [int(x) for x in ns.split(",") if x.strip()]
    except ValueError:
        raise GenerationError(f"--n: expected comma-separated integers, got {ns!r}") from None
    scorers = [part.strip() for part in scorer.split(",") if part.strip()]
    if search:  # a bad scorer or reward-model path fails now, not after the table has run
        from llm_core.search import resolve_scorer

        if not scorers:
            raise GenerationError("--scorer: empty list")
        for name in scorers:
            resolve_scorer(name)
    if not vote_sizes or min(vote_sizes) < 1:
        raise GenerationError(f"--n: vote sizes must be >= 1, got {ns!r}")
    if limit is not None and limit < 1:
        raise GenerationError(f"--limit: must be >= 1, got {limit}")
    votes = SamplingParams(temperature=temperature, stop=RESPONSE_STOPS, truncate=True)  # seeded per question
    entries = _load_eval(data or default_paths()["eval"], limit)
    if paraphrase is None and data is None and default_paths()["eval_paraphrase"].exists():
        paraphrase = default_paths()["eval_paraphrase"]
    paraphrased = _load_eval(paraphrase, limit) if paraphrase is not None else []
    loaded = _load(checkpoint)
    engine = Engine(loaded.model, loaded.tokenizer)
    rows = {"direct": [0.0, 0, 0], "cot": [0.0, 0, 0], **{f"vote{n}": [0.0, 0, 0] for n in vote_sizes}}
    for q, entry in enumerate(entries):
        question, truth = entry["question"], entry["answer"]
        for mode in ("direct", "cot"):
            r = engine.answer(question, mode=mode, max_new_tokens=max_new_tokens, params=EVAL_GREEDY)
            rows[mode][0] += float(r.answer == truth)
            rows[mode][1] += r.tokens
        for n in vote_sizes:
            v = engine.majority_vote(experiment_prompt(question, "cot"), n, max_new_tokens,
                                     votes.replace(seed=seed + q))
            rows[f"vote{n}"][0] += vote_credit(v, truth)
            rows[f"vote{n}"][1] += engine.last_stats.new_tokens
            rows[f"vote{n}"][2] += v.saved
        if (q + 1) % 10 == 0 or q + 1 == len(entries):
            typer.echo(f"  {q + 1}/{len(entries)} problems", err=True)
    # Greedy rows beyond the cued in-distribution ones: [correct, tokens, step-by-step responses, problems].
    extra: dict[str, list[float]] = {}

    def greedy_row(key: str, question: str, mode: str, truth: int) -> None:
        r = engine.answer(question, mode=mode, max_new_tokens=max_new_tokens, params=EVAL_GREEDY)
        row = extra.setdefault(key, [0.0, 0, 0, 0])
        row[0] += float(r.answer == truth)
        row[1] += r.tokens
        row[2] += int(is_step_by_step(r.text))
        row[3] += 1

    for entry in entries:
        greedy_row("neutral", entry["question"], "neutral", entry["answer"])
    for q, entry in enumerate(paraphrased):
        for mode in ("direct", "cot", "neutral"):
            greedy_row(f"paraphrase_{mode}", entry["question"], mode, entry["answer"])
        if (q + 1) % 50 == 0 or q + 1 == len(paraphrased):
            typer.echo(f"  paraphrase {q + 1}/{len(paraphrased)} problems", err=True)
    total = len(entries)
    typer.echo(f"{loaded.path} (step {loaded.step}), {total} problems, vote temperature {temperature}")
    typer.echo(f"{'method':<28}{'N':>4}{'accuracy':>10}{'tokens/question':>17}{'saved/question':>16}")
    labels = {"direct": ("direct answer (greedy)", 1), "cot": ("chain of thought (greedy)", 1)}
    labels.update({f"vote{n}": ("majority vote (CoT)", n) for n in vote_sizes})
    table = []
    for key, (acc, tokens, saved) in rows.items():
        name, n = labels[key]
        saved_text = f"{saved / total:.1f}" if key.startswith("vote") else "-"
        typer.echo(f"{name:<28}{n:>4}{acc / total:>10.1%}{tokens / total:>17.1f}{saved_text:>16}")
        table.append({"method": name, "n": n, "accuracy": acc / total, "tokens_per_question": tokens / total,
                      "saved_per_question": saved / total if key.startswith("vote") else None})
    extra_labels = {
        "neutral": "neutral prompt (greedy)",
        "paraphrase_direct": "paraphrase: direct (greedy)",
        "paraphrase_cot": "paraphrase: CoT (greedy)",
        "paraphrase_neutral": "paraphrase: neutral (greedy)",
    }
    for key, (acc, tokens, worked, count) in extra.items():
        name = extra_labels[key]
        typer.echo(f"{name:<28}{1:>4}{acc / count:>10.1%}{tokens / count:>17.1f}{'-':>16}"
                   + (f"   step by step: {worked / count:.1%}" if key.endswith("neutral") else ""))
        table.append({"method": name, "n": 1, "accuracy": acc / count, "tokens_per_question": tokens / count,
                      "saved_per_question": None, "set": "paraphrase" if key.startswith("paraphrase") else "eval",
                      "problems": count, "step_by_step_share": worked / count})
    # Next to the checkpoint, so `workbench report` and the TUI's runs list can show the table.
    result = {"checkpoint": str(loaded.path), "step": loaded.step, "problems": total, "temperature": temperature,
              "max_new_tokens": max_new_tokens, "seed": seed, "rows": table,
              "paraphrase_problems": len(paraphrased)}
    target = loaded.path / EVAL_RESULTS
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(target)
    typer.echo(f"written: {target}")
    if search:  # after the table is saved: the search rows are added to the same file
        from .eval_search import run_search, search_lines

        result["search"] = run_search(engine, entries, temperatures, vote_sizes, widths, max_new_tokens, seed,
                                      scorers)
        typer.echo("\n".join(search_lines(result["search"])))
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(target)
        typer.echo(f"search rows written: {target}")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
