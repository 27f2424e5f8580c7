"""A database in a service's work: ``work: {db: {query, index, rows, pool, span}}``.

Each message the service handles runs one query against PostgreSQL, through a pool
of ``pool`` connections per replica, on a table of ``rows`` rows that the run
creates, fills and drops (hopbench.brokers.postgres). ``index: false`` leaves the
key column without an index: every query then scans the table, and its time grows
with ``rows``. The pool is the lever on concurrency: a query that finds every
connection busy waits for one (measured apart, and sampled as the replica's queue
for the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

Query = Literal["point", "range"]
MAX_ROWS = 10_000_000  # filled at provisioning: ~1.5 s per million rows on 2 cores
MAX_POOL = 100  # PostgreSQL's max_connections is 100 by default


class DbSpec(BaseModel):
    """The YAML form (a service's ``work.db``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Query = Field("point", description="point: one row by key; range: span rows in order")
    index: bool = Field(True, description="an index on the key column; false: every query scans")
    rows: int = Field(10_000, ge=1, le=MAX_ROWS, description="rows in the service's table")
    pool: int = Field(4, ge=1, le=MAX_POOL, description="connections per replica")
    span: int = Field(100, ge=1, description="rows a range query reads (query: range)")

    @pydantic.model_validator(mode="after")
    def _span_fits(self) -> DbSpec:
        if self.query == "range" and self.span > self.rows:
            raise PydanticCustomError(
                "db_span",
                "span {span} is more rows than the table's {rows}; make span at most rows",
                {"span": self.span, "rows": self.rows},
            )
        return self


@dataclass(frozen=True)
class DbWork:
    """The resolved form a service replica runs."""

    query: str
    index: bool
    rows: int
    pool: int
    span: int

    @classmethod
    def of(cls, spec: DbSpec) -> DbWork:
        return cls(spec.query, spec.index, spec.rows, spec.pool, spec.span)

    def describe(self) -> str:
        """e.g. 'point query on 10,000 rows, no index, pool 4'."""
        what = f"range query of {self.span} rows" if self.query == "range" else "point query"
        index = "indexed" if self.index else "no index"
        return f"{what} on {self.rows:,} rows, {index}, pool {self.pool}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "index": self.index,
            "rows": self.rows,
            "pool": self.pool,
            "span": self.span,
        }
