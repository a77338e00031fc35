"""Tokens and money: what the calls of a staging used and cost, and the budget that stops a run.

Every call's token counts are in the ledger's attempts (from the server's answer, or estimated where
it did not say: language/backends/base.py).  Prices are per million input and output tokens, per
backend and model, in models.yaml (0 where none is given, as for local models); a cost is always
computed from the current prices, so a corrected price corrects every figure shown.

A Budget (`--max-cost`, `--max-tokens-total`) covers one run.  Before each call the scheduler asks
whether the call could cross it: the tokens and cost of the calls so far, plus what is held for the
calls in flight, plus the most this call may use (its prompt at one token per BUDGET_BYTES_PER_TOKEN
bytes plus CHAT_OVERHEAD_TOKENS, and max_tokens of answer).  English averages about four bytes per
token, so the estimate counts about twice an English prompt's tokens: a run stops early, not late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .backends.base import CHARS_PER_TOKEN
from .errors import LanguageError, UserError
from .settings import Settings

BUDGET_BYTES_PER_TOKEN = 2      # the budget's (conservative) prompt estimate
CHAT_OVERHEAD_TOKENS = 32       # the chat template's role markers around the system prompt and prompt
PER_MILLION = 1_000_000


class Prices:
    """Price per million input and output tokens of a backend's model: the one models.yaml gives that
    backend, else (an --endpoint server) the first one models.yaml gives that model name, else 0."""

    def __init__(self, specs=(), currency: str = "USD"):
        self.currency = currency
        self._exact: dict[tuple[str, str], tuple[float, float]] = {}
        self._by_model: dict[str, tuple[float, float]] = {}
        for spec in specs:
            for model, price_in, price_out in spec.prices:
                self._exact[(spec.name, model)] = (price_in, price_out)
                self._by_model.setdefault(model, (price_in, price_out))

    @classmethod
    def of_settings(cls, settings: Settings, specs=()) -> Prices:
        """The prices of models.yaml's backends and of `specs` (the run's, which may be --endpoint ones)."""
        return cls((*settings.backends, *specs), settings.currency)

    def of(self, backend: str | None, model: str | None) -> tuple[float, float]:
        return self._exact.get((backend, model)) or self._by_model.get(model) or (0.0, 0.0)

    def cost(self, backend: str | None, model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self.of(backend, model)
        return (prompt_tokens * price_in + completion_tokens * price_out) / PER_MILLION


def usage_table(totals: pl.DataFrame, prices: Prices) -> pl.DataFrame:
    """Per model (summed over the backends that served it): calls, tokens, estimated calls and cost,
    from Ledger.token_totals()."""
    price = pl.DataFrame([(b, m, *prices.of(b, m)) for b, m in totals.select("backend", "model").iter_rows()],
                         schema={"backend": pl.Utf8, "model": pl.Utf8, "price_in": pl.Float64,
                                 "price_out": pl.Float64}, orient="row")
    return (totals.join(price, on=["backend", "model"], how="left", nulls_equal=True)
            .with_columns(cost=(pl.col("prompt_tokens") * pl.col("price_in")
                                + pl.col("completion_tokens") * pl.col("price_out")) / PER_MILLION)
            .group_by("model").agg(pl.col("calls", "prompt_tokens", "completion_tokens", "estimated_calls",
                                          "cost").sum())
            .sort("model", nulls_last=True))


def usage_summary(totals: pl.DataFrame, prices: Prices) -> dict:
    """The export metadata's usage section: tokens and cost per model and in total."""
    table = usage_table(totals, prices)

    def entry(calls, prompt_tokens, completion_tokens, estimated_calls, cost) -> dict:
        return {"calls": int(calls), "prompt_tokens": int(prompt_tokens), "completion_tokens": int(completion_tokens),
                "total_tokens": int(prompt_tokens + completion_tokens), "estimated_calls": int(estimated_calls),
                "cost": round(float(cost), 6)}

    columns = ("calls", "prompt_tokens", "completion_tokens", "estimated_calls", "cost")
    models = {str(r["model"]): entry(*(r[c] for c in columns)) for r in table.iter_rows(named=True)}
    total = entry(*(table[c].sum() for c in columns))
    return {"currency": prices.currency, "models": models, "total": total,
            "note": "tokens as the servers reported them (estimated_calls: calls whose counts were estimated at "
                    f"{CHARS_PER_TOKEN} characters per token); cost from the prices in models.yaml per million tokens"}


@dataclass
class Budget:
    """One run's limits (None: no limit) and what the run has used and holds for calls in flight."""

    max_cost: float | None = None
    max_tokens: int | None = None
    tokens: int = 0
    cost: float = 0.0
    held_tokens: int = 0
    held_cost: float = 0.0
    stopped: str | None = field(default=None)   # why the run stopped issuing calls

    @classmethod
    def from_options(cls, max_cost: float | None, max_tokens_total: int | None, prices: Prices,
                     pool: list[tuple[str, str]]) -> Budget | None:
        """The budget of --max-cost and --max-tokens-total (None when neither is given) for a run on the
        (backend, model) pairs of `pool`.  A cost budget needs a price for at least one of them: else
        no call would count against it."""
        if max_cost is not None and not (max_cost >= 0 and max_cost != float("inf")):
            raise LanguageError(f"--max-cost: must be a finite amount of at least 0, got {max_cost}")
        if max_cost is not None and not any(prices.of(b, m) != (0.0, 0.0) for b, m in pool):
            raise LanguageError(f"--max-cost: no model of this run has a price in models.yaml "
                                f"({', '.join(f'{b}/{m}' for b, m in pool)}), so nothing would count against it; "
                                "add prices or use --max-tokens-total")
        if max_tokens_total is not None and max_tokens_total < 0:
            raise LanguageError(f"--max-tokens-total: must be at least 0, got {max_tokens_total}")
        if max_cost is None and max_tokens_total is None:
            return None
        return cls(max_cost, max_tokens_total)

    def hold(self, tokens: int, cost: float) -> bool:
        """Hold a call's most for it if the run stays within its limits; else stop the run (False)."""
        if self.stopped is not None:
            return False
        if self.max_tokens is not None and self.tokens + self.held_tokens + tokens > self.max_tokens:
            self.stopped = (f"the next call could use {tokens:,} tokens, {self.tokens + self.held_tokens:,} of the "
                            f"{self.max_tokens:,} of --max-tokens-total are used or held")
        elif self.max_cost is not None and self.cost + self.held_cost + cost > self.max_cost:
            self.stopped = (f"the next call could cost {cost:.6g}, {self.cost + self.held_cost:.6g} of the "
                            f"{self.max_cost:g} of --max-cost are spent or held")
        else:
            self.held_tokens += tokens
            self.held_cost += cost
            return True
        return False

    def settle(self, held_tokens: int, held_cost: float, tokens: int, cost: float) -> None:
        """A call is over: release what was held for it and count what it used."""
        self.held_tokens -= held_tokens
        self.held_cost -= held_cost
        self.tokens += tokens
        self.cost += cost


def most_tokens(system: str, prompt: str, max_tokens: int) -> tuple[int, int]:
    """The most (prompt, completion) tokens a call may use, conservatively: see the module's docstring."""
    size = len(system.encode()) + len(prompt.encode())
    return -(-size // BUDGET_BYTES_PER_TOKEN) + CHAT_OVERHEAD_TOKENS, max_tokens


def load_prices(models_path: Path | None) -> tuple[Prices, str | None]:
    """The prices in models.yaml; when the file cannot be used, none (every cost 0) and why."""
    from .settings import load_settings

    try:
        return Prices.of_settings(load_settings(models_path)), None
    except UserError as exc:
        return Prices(), f"no prices ({exc}): costs shown as 0"


def status_usage(ledger, models_path: Path | None) -> tuple[pl.DataFrame, list[str]]:
    """For `status`: the per-model table of every call in the staging with a total row (tokens, cost
    in the currency of the prices), and notes (estimated counts, missing prices, a budget stop)."""
    prices, problem = load_prices(models_path)
    table = usage_table(ledger.token_totals(), prices)
    notes = [problem] if problem else []
    if len(table):
        estimated = int(table["estimated_calls"].sum())
        if estimated:
            notes.append(f"{estimated} calls' token counts were estimated (their server did not report them)")
        total = table.select(pl.lit("total").alias("model"), pl.exclude("model").sum())
        table = pl.concat([table, total])
        table = table.select("model", "calls", "prompt_tokens", "completion_tokens",
                             (pl.col("prompt_tokens") + pl.col("completion_tokens")).alias("total_tokens"),
                             pl.Series(f"cost ({prices.currency})", [f"{c:.6f}" for c in table["cost"]]))
    stop = ledger.get_meta("budget_stop")
    if stop:
        notes.append(f"the last run stopped at its budget: {stop}")
    return table, notes
