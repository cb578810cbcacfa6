"""Summary metrics over the result rows of a run (pure functions)."""

from __future__ import annotations

from typing import Any

from evals.records import ResultRow


def mean_of(rows: list[ResultRow], key: str) -> tuple[float | None, int]:
    """Mean score of one feedback key over the rows that have it, and how many do."""
    values = [s[key] for row in rows if key in (s := row.scores())]
    return (sum(values) / len(values) if values else None), len(values)


def relative_change(before: float | None, after: float | None) -> float | None:
    """(after - before) / before, or None when it is undefined."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before


def win_counts(rows: list[ResultRow], key: str) -> dict[str, Any]:
    """Wins, losses, draws and errors of the answer under test for one comparison key, and
    its win rate (a draw counts half; errors are left out)."""
    outcomes = [
        (f.metadata or {}).get("outcome", "error")
        for row in rows
        for f in row.feedback
        if f.key == key
    ]
    wins = outcomes.count("refined")
    losses = outcomes.count("previous")
    draws = outcomes.count("tie") + outcomes.count("inconsistent")
    n = wins + losses + draws
    return {
        "win_rate": round((wins + 0.5 * draws) / n, 4) if n else None,
        "wins": wins,
        "losses": losses,
        "draws": draws,
        "errors": len(outcomes) - n,
        "n": n,
    }


def pooled_agreement(rows: list[ResultRow], key: str) -> dict[str, Any]:
    """Agreeing judgments over all judgments of one consistency key, pooled over items."""
    agree = n = 0
    for row in rows:
        for f in row.feedback:
            if f.key == key and f.metadata:
                agree += int(f.metadata.get("agree", 0))
                n += int(f.metadata.get("n", 0))
    return {"agree": agree, "n": n, "rate": round(agree / n, 4) if n else None}


def keys_with_prefix(rows: list[ResultRow], prefix: str) -> list[str]:
    """Every feedback key starting with `prefix`, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for f in row.feedback:
            if f.key.startswith(prefix):
                seen.setdefault(f.key)
    return list(seen)


def pct(value: float | None) -> float | None:
    """A 0-1 share as a percentage, rounded."""
    return None if value is None else round(100 * value, 2)
