"""parameters stored as a safetensors file, not one JSON string

A JSON string of a model past about 100M parameters is longer than the database drivers take
(INT_MAX bytes). Each job's saved parameters become a safetensors file (`file`, BLOB on SQLite,
bytea on PostgreSQL) with the number of scalars it holds (`scalars`). Existing rows are
converted, not dropped: each JSON object's tensors are written in the job's dtype (`spec.dtype`;
float64 for a spec without one, a minimize job's), in the object's order (`state_dict` order),
with a JSON null (a value that was not finite) as NaN. The downgrade converts them back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: safetensors' names of the dtypes a job's parameters are stored in
DTYPES = {"float32": ("F32", "<f4"), "float64": ("F64", "<f8")}
NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}

parameters = sa.table(
    "job_parameters",
    sa.column("job_pk", sa.Integer()),
    sa.column("parameters", sa.Text()),
    sa.column("scalars", sa.BigInteger()),
    sa.column("file", sa.LargeBinary()),
)
jobs = sa.table("jobs", sa.column("pk", sa.Integer()), sa.column("spec", sa.JSON()))


def upgrade() -> None:
    op.add_column("job_parameters", sa.Column("scalars", sa.BigInteger(), nullable=True))
    op.add_column("job_parameters", sa.Column("file", sa.LargeBinary(), nullable=True))
    query = sa.select(parameters.c.parameters, jobs.c.spec).join(
        jobs, jobs.c.pk == parameters.c.job_pk
    )
    for job_pk, (text, spec) in _rows(query):
        dtype = (spec or {}).get("dtype") or "float64"
        file = _safetensors(orjson.loads(text), dtype)
        scalars = sum(math.prod(t["shape"]) for t in _header(file).values())
        _update(job_pk, scalars=scalars, file=file)
    with op.batch_alter_table("job_parameters", schema=None) as batch_op:
        batch_op.alter_column("scalars", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("file", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("parameters")


def downgrade() -> None:
    op.add_column("job_parameters", sa.Column("parameters", sa.Text(), nullable=True))
    for job_pk, (file,) in _rows(sa.select(parameters.c.file)):
        _update(job_pk, parameters=_json(bytes(file)))
    with op.batch_alter_table("job_parameters", schema=None) as batch_op:
        batch_op.alter_column("parameters", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("file")
        batch_op.drop_column("scalars")


def _rows(query: sa.Select[Any]) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Each job's row of `query`, read one at a time: a table of large models may not fit in
    memory whole."""
    bind = op.get_bind()
    keys = bind.execute(sa.select(parameters.c.job_pk).order_by(parameters.c.job_pk)).scalars()
    for job_pk in list(keys):
        row = bind.execute(query.where(parameters.c.job_pk == job_pk)).one()
        yield job_pk, tuple(row)


def _update(job_pk: int, **values: Any) -> None:
    op.get_bind().execute(
        sa.update(parameters).where(parameters.c.job_pk == job_pk).values(**values)
    )


def _safetensors(tensors: dict[str, Any], dtype: str) -> bytes:
    """Nested lists (None where a value was not finite) as a safetensors file, in their order."""
    name, numpy_dtype = DTYPES[dtype]
    arrays = {k: np.array(v, dtype=np.float64).astype(numpy_dtype) for k, v in tensors.items()}
    header, end = {}, 0
    for key, array in arrays.items():
        start, end = end, end + array.nbytes
        header[key] = {"dtype": name, "shape": list(array.shape), "data_offsets": [start, end]}
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return b"".join([struct.pack("<Q", len(head)), head, *(a.tobytes() for a in arrays.values())])


def _header(file: bytes) -> dict[str, Any]:
    (length,) = struct.unpack_from("<Q", file)
    header: dict[str, Any] = json.loads(file[8 : 8 + length])
    header.pop("__metadata__", None)
    return header


def _json(file: bytes) -> str:
    """A safetensors file as the JSON object it was stored as before (NaN and infinity: null)."""
    header = _header(file)
    data = memoryview(file)[8 + struct.unpack_from("<Q", file)[0] :]
    tensors = {}
    for key, tensor in header.items():
        start, end = tensor["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=NUMPY_DTYPES[tensor["dtype"]])
        tensors[key] = array.reshape(tensor["shape"]).tolist()
    return orjson.dumps(tensors).decode()
