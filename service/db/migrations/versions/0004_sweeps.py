"""sweeps: a grid of jobs made from one base spec

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweeps_owner"), ["owner"], unique=False)

    # `ADD COLUMN ... REFERENCES`, which SQLite and PostgreSQL both take, rather than batch
    # mode: batch mode copies `jobs` and drops the original, and with foreign keys enforced
    # SQLite's DROP TABLE deletes the rows first, cascading to every job's curves.
    sweep_pk = sa.Column("sweep_pk", sa.Integer(), sa.ForeignKey("sweeps.pk"), nullable=True)
    op.add_column("jobs", sweep_pk, inline_references=True)
    op.add_column("jobs", sa.Column("sweep_index", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("overrides", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_jobs_sweep_pk"), "jobs", ["sweep_pk"], unique=False)


def downgrade() -> None:
    _refuse_to_cascade()
    op.drop_index(op.f("ix_jobs_sweep_pk"), table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("overrides")
        batch_op.drop_column("sweep_index")
        batch_op.drop_column("sweep_pk")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweeps_owner"))
    op.drop_table("sweeps")


def _refuse_to_cascade() -> None:
    """SQLite drops a column with a foreign key only by copying the table (batch mode), and
    with foreign keys enforced, dropping the original would delete every job's curves."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "downgrading below 0004 on SQLite needs a connection with PRAGMA foreign_keys = OFF"
            " (set outside a transaction); with them on, copying the jobs table would delete"
            " every job's curves"
        )
