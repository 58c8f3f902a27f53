"""curves as chunks of packed points under a pyramid of min/max summaries, not a row a point

Every series' points (`curve_points`, one row per step) become chunks of up to 64 points,
steps and values as packed arrays, with the summaries of every FANOUT closed chunks above
them (service/store/chunks.py); a value that was null (not finite) becomes NaN. The last chunk
of each series stays open, so a job that runs again appends to its series as a new writer
does. The downgrade writes the points back one to a row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import numpy as np
import sqlalchemy as sa
from alembic import op

from service.store import chunks, summaries

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

points_table = sa.table(
    "curve_points",
    sa.column("series_id", sa.Integer()),
    sa.column("step", sa.Integer()),
    sa.column("value", sa.Float()),
)
series_table = sa.table("curve_series", sa.column("id", sa.Integer()))


def upgrade() -> None:
    op.create_table(
        "curve_chunks",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("finite", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=True),
        sa.Column("min_step", sa.Integer(), nullable=True),
        sa.Column("max_value", sa.Float(), nullable=True),
        sa.Column("max_step", sa.Integer(), nullable=True),
        sa.Column("steps", sa.LargeBinary(), nullable=True),
        sa.Column("parts", sa.LargeBinary(), nullable=True),
        sa.Column("values", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["series_id"], ["curve_series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "level", "seq"),
    )
    op.create_index("ix_curve_chunks_first_step", "curve_chunks", ["series_id", "first_step"])
    conn = op.get_bind()
    for series_id in conn.execute(sa.select(series_table.c.id)).scalars().all():
        rows = conn.execute(
            sa.select(points_table.c.step, points_table.c.value)
            .where(points_table.c.series_id == series_id)
            .order_by(points_table.c.step)
        ).all()
        if rows:
            steps, values = summaries.as_arrays([r[0] for r in rows], [r[1] for r in rows])
            chunks.append(conn, series_id, None, steps, values)
    op.drop_table("curve_points")


def downgrade() -> None:
    op.create_table(
        "curve_points",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["series_id"], ["curve_series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "step"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    for series_id in conn.execute(sa.select(series_table.c.id)).scalars().all():
        steps, values = chunks.read(conn, series_id, first=None, last=None, points=None)
        if len(steps):
            conn.execute(
                sa.insert(points_table),
                [
                    {"series_id": series_id, "step": s, "value": None if np.isnan(v) else v}
                    for s, v in zip(steps.tolist(), values.tolist(), strict=True)
                ],
            )
    op.drop_table("curve_chunks")
