"""The building blocks of an explanation: polars expressions over a sample frame that say a
metric's value, its usual level, how long it has been off, and the host's facts.

Each anomaly kind writes its own phrasings from these (its module's `explain(say)`); `explain.py`
computes the columns they read (`evidence_features`) and picks a phrasing per sample.
"""

from __future__ import annotations

import polars as pl

from .catalogue import UNIT_SUFFIX

# prefixes of the evidence columns, one per metric: usual level, its span and the span's unit, the
# first context reading, the trailing off run in minutes, the distance from usual in spreads
USUAL, SPAN, SPAN_UNIT, AGO, RUN, SPREADS = "usual_", "usual_span_", "usual_unit_", "ago_", "off_run_", "spreads_off_"


class Phrases:
    """Phrases over a sample frame whose context spans `minutes_shown` minutes."""

    def __init__(self, minutes_shown: float):
        self.minutes_shown = minutes_shown

    @staticmethod
    def text(template: str, *parts: pl.Expr) -> pl.Expr:
        """`template` with each {} filled by a part."""
        return pl.format(template, *parts)

    @staticmethod
    def value(column: str) -> pl.Expr:
        """A column as it is (a count, the host's cores)."""
        return pl.col(column)

    @staticmethod
    def number(column: str, digits: int) -> pl.Expr:
        """A column rounded to `digits` decimals, without a unit."""
        return Phrases.number_of(pl.col(column), digits)

    @staticmethod
    def number_of(expr: pl.Expr, digits: int) -> pl.Expr:
        rounded = expr.cast(pl.Float64).round(digits)
        return (rounded.cast(pl.Int64) if digits == 0 else rounded).cast(pl.Utf8)

    @staticmethod
    def now(metric: str, digits: int = 1) -> pl.Expr:
        """The snapshot's value with its unit: '93.4%'."""
        return pl.format("{}{}", Phrases.number(metric, digits), pl.lit(UNIT_SUFFIX[metric]))

    @staticmethod
    def vs_usual(metric: str, digits: int = 1) -> pl.Expr:
        """'up from its median of U over the previous N hours' (or down from / the same as)."""
        now, usual = pl.col(metric).cast(pl.Float64).round(digits), pl.col(USUAL + metric).round(digits)
        word = pl.when(now > usual).then(pl.lit("up from")).when(now < usual).then(pl.lit("down from")) \
            .otherwise(pl.lit("the same as"))
        return pl.format("{} its median of {}{} over the previous {} {}", word, Phrases.number(USUAL + metric, digits),
                         pl.lit(UNIT_SUFFIX[metric]), pl.col(SPAN + metric), pl.col(SPAN_UNIT + metric))

    def since(self, metric: str) -> pl.Expr:
        """How long the context shows the metric off its usual level ('' when the snapshot is not off)."""
        run = pl.col(RUN + metric)
        return (pl.when(run == -1).then(pl.lit(f", throughout the last {self.minutes_shown:g} minutes"))
                .when(run == 0).then(pl.lit(", in the latest reading only"))
                .when(run > 0).then(pl.format(", over the last {} minutes", run.cast(pl.Int64)))
                .otherwise(pl.lit("")))

    def moved(self, metric: str, digits: int = 1) -> pl.Expr:
        """'cpu_usage is 93.4%, up from its median of 20.1% over the previous 6 hours, over the last
        15 minutes'."""
        return pl.format("{} is {}, {}{}", pl.lit(metric), self.now(metric, digits), self.vs_usual(metric, digits),
                         self.since(metric))

    def ago(self, metric: str, digits: int = 1) -> pl.Expr:
        """The first reading of the context: '20.1% 55 minutes ago'."""
        return pl.format("{}{} {} minutes ago", Phrases.number(AGO + metric, digits), pl.lit(UNIT_SUFFIX[metric]),
                         pl.lit(f"{self.minutes_shown:g}"))

    @staticmethod
    def host() -> pl.Expr:
        """'a web_api host with 16 cores'."""
        article = pl.when(pl.col("profile").str.contains(r"^[aeiouAEIOU]")).then(pl.lit("an")).otherwise(pl.lit("a"))
        return pl.format("{} {} host with {} cores", article, pl.col("profile"), pl.col("cores"))
