"""A lock in a service's work: which key a message touches, and how it is guarded.

Each message touches one key of ``keys``: with probability ``hot`` the hot key (key 0),
otherwise a key drawn uniformly from all of them. ``pessimistic`` holds the key's lock
across the whole work (CPU and I/O): messages on a held key wait. ``optimistic`` reads
the key's version, does the work, then sets the version if nobody changed it meanwhile
(compare-and-set); if somebody did, the work is done again (a retry, counted), at most
``max_retries`` times before the message fails. The keys and their locks are the
replica's own, as a service guards its own in-memory state.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LockMode = Literal["pessimistic", "optimistic"]


class LockSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: LockMode
    keys: int = Field(100, ge=1, le=10_000_000, description="keys a message may touch")
    hot: float = Field(0.0, ge=0, le=1, description="share of messages that touch key 0")
    max_retries: int = Field(
        100, ge=0, le=1_000_000, description="optimistic: retries before a message fails"
    )
