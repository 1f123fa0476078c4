"""Slow-control readings in SQL: the newest value of a quantity, and when it was taken."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daq.store.models import SlowControlReading


def newest_reading(session: Session, quantity: str) -> tuple[float, datetime] | None:
    """The newest value of a slow-control quantity and its time (UTC); None if none."""
    row = session.execute(
        select(SlowControlReading.value, SlowControlReading.time_utc)
        .where(SlowControlReading.quantity == quantity)
        .order_by(SlowControlReading.time_utc.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    stamp = row.time_utc if row.time_utc.tzinfo else row.time_utc.replace(tzinfo=UTC)
    return row.value, stamp
