"""What every listed resource shares: who may see a row, and pages of rows newest first.

Jobs, sweeps and datasets are listed the same way: a keyset page on the table's primary key,
newest first, with the key of the page's last row as the cursor for the next page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select

from service.errors import BadRequest, quoted

#: the largest page a list route answers
MAX_PAGE = 500

#: a SELECT of any columns
AnySelect = Select[*tuple[Any, ...]]


def visible(table: Any, public_id: str, owner: str | None) -> ColumnElement[bool]:
    """The row of `table` with this public id, if `owner` may see it (None: anyone's)."""
    clause: ColumnElement[bool] = table.id == public_id
    return clause if owner is None else clause & (table.owner == owner)


def page_query(
    query: AnySelect, table: Any, *, owner: str | None, limit: int, cursor: str | None
) -> AnySelect:
    """`query` narrowed to one page of `owner`'s rows, newest first, one more row than `limit`
    to tell whether another page follows."""
    query = query.order_by(table.pk.desc()).limit(limit + 1)
    if owner is not None:
        query = query.where(table.owner == owner)
    if cursor is not None:
        if not cursor.isdigit():
            raise BadRequest(f"cursor {quoted(cursor)} is not one this service gave out")
        query = query.where(table.pk < int(cursor))
    return query


def read_page(
    conn: Connection,
    query: AnySelect,
    table: Any,
    *,
    owner: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], str | None]:
    """One page of rows and the cursor of the next page (None after the last)."""
    rows = conn.execute(page_query(query, table, owner=owner, limit=limit, cursor=cursor)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1].pk) if more else None)
