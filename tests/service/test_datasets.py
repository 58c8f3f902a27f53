"""Uploaded datasets (API.md section 5) and the limits on uploads (section 9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.types import Message, Receive, Scope, Send

from service.api import uploads
from service.api.body_size import FRAMING_BYTES, BodySizeLimit
from service.config import Settings
from service.errors import InvalidUpload, NotFound
from service.main import create_app
from service.store import datasets

CSV = b"a,b,y\n1,2.5,0\n-3,4e-3,1\n0.1,6,2\n"


def upload(client: TestClient, content: bytes, **form: str) -> httpx.Response:
    return client.post("/datasets", files={"file": ("d.csv", content, "text/csv")}, data=form)


def created(client: TestClient, content: bytes = CSV, **form: str) -> dict[str, Any]:
    response = upload(client, content, **form)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def refused(
    client: TestClient, content: bytes, status: int = 422, form: dict[str, str] | None = None
) -> str:
    response = upload(client, content, **(form or {}))
    assert response.status_code == status, response.text
    return response.json()["detail"]  # type: ignore[no-any-return]


# --- uploading and reading ---------------------------------------------------------------


def test_upload_answers_the_dataset(client: TestClient) -> None:
    body = created(client, b"a,y,b\n1,10,2\n3,20,4\n", name="n", target="y")
    assert body["name"] == "n" and body["target"] == "y"
    assert body["columns"] == ["a", "y", "b"]
    assert body["n_samples"] == 2 and body["n_features"] == 2
    assert body["integer_target"] is True
    assert body["target_min"] == 10.0 and body["target_max"] == 20.0
    assert set(body) == {
        "id", "name", "n_samples", "n_features", "columns", "target", "created_at",
        "integer_target", "target_min", "target_max",
    }  # fmt: skip
    assert client.get(f"/datasets/{body['id']}").json() == body


def test_default_target_is_the_last_column_and_name_the_file(client: TestClient) -> None:
    body = created(client, b"p,q,r\n1,2,3\n")
    assert body["target"] == "r" and body["n_features"] == 2 and body["name"] == "d.csv"


@pytest.mark.parametrize(
    ("targets", "integer"),
    [(["0", "1", "2"], True), (["3.0", "-1", "1e2"], True), (["0", "0.5", "1"], False)],
)
def test_integer_targets_are_detected(
    client: TestClient, targets: list[str], integer: bool
) -> None:
    content = "x,y\n" + "".join(f"{i},{t}\n" for i, t in enumerate(targets))
    assert created(client, content.encode())["integer_target"] is integer


def test_load_gives_back_the_exact_numbers(client: TestClient, engine: Engine) -> None:
    body = created(client, b"a,y,b\n1,0.1,2.5\n-3,1e-300,4e-3\n", target="y")
    dataset, x, y = datasets.load(engine, dataset_id=body["id"], owner=None)
    assert dataset.id == body["id"] and dataset.columns == ["a", "y", "b"]
    assert x.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(x, np.array([[1.0, 2.5], [-3.0, 4e-3]]))
    np.testing.assert_array_equal(y, np.array([0.1, 1e-300]))


def test_quoting_crlf_bom_and_blank_lines_are_fine() -> None:
    raw = b'\xef\xbb\xbf"a", b ,y\r\n1,"2",3\r\n\r\n4,5,6\r\n\r\n\r\n'
    parsed = uploads.parse_csv(raw, target=None, limits=uploads.Limits(rows=10))
    assert parsed.columns == ["a", "b", "y"]
    np.testing.assert_array_equal(parsed.x, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(parsed.y, [3, 6])


def test_get_list_delete(client: TestClient) -> None:
    ids = [created(client, name=f"d{i}")["id"] for i in range(5)]
    first = client.get("/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ids[::-1][:2]  # newest first
    rest = client.get("/datasets", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in rest["items"]] == ids[::-1][2:] and rest["next_cursor"] is None
    assert client.delete(f"/datasets/{ids[0]}").status_code == 204
    assert client.get(f"/datasets/{ids[0]}").status_code == 404
    assert client.delete(f"/datasets/{ids[0]}").status_code == 404
    assert len(client.get("/datasets").json()["items"]) == 4
    assert client.get("/datasets", params={"cursor": "x"}).status_code == 422


def test_unknown_ids_are_404(client: TestClient, engine: Engine) -> None:
    assert client.get("/datasets/nope").json() == {"detail": "no dataset 'nope'"}
    assert client.delete("/datasets/nope").status_code == 404
    with pytest.raises(NotFound):
        datasets.load(engine, dataset_id="nope", owner=None)


def test_another_token_sees_nothing(db_url: str, engine: Engine) -> None:
    with TestClient(create_app(Settings(database_url=db_url, api_tokens="a,b"))) as client:
        alice, bob = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
        files = {"file": ("d.csv", CSV, "text/csv")}
        assert client.post("/datasets", files=files).status_code == 401
        dataset = client.post("/datasets", files=files, headers=alice).json()
        assert client.get(f"/datasets/{dataset['id']}", headers=bob).status_code == 404
        assert client.get("/datasets", headers=bob).json()["items"] == []
        assert client.delete(f"/datasets/{dataset['id']}", headers=bob).status_code == 404
        assert client.get(f"/datasets/{dataset['id']}", headers=alice).status_code == 200
    # the worker reads anyone's; a wrong owner reads nothing
    assert datasets.load(engine, dataset_id=dataset["id"], owner=None)[1].shape == (3, 2)
    with pytest.raises(NotFound):
        datasets.load(engine, dataset_id=dataset["id"], owner="someone else")


@pytest.mark.parametrize("gone_at", [1, 2])
def test_an_upload_whose_client_left_is_not_kept(
    settings: Settings, engine: Engine, gone_at: int
) -> None:
    # the route looks for its client after the parse (1) and after the store (2); gone at
    # either, the dataset is not kept. tests/e2e/test_upload_disconnect.py does it for real
    request = httpx.Request("POST", "http://test/datasets", files={"file": ("d.csv", CSV)})
    body = request.read()
    looks = 0

    async def receive() -> Message:
        nonlocal looks
        if looks == 0:
            looks = 1
            return {"type": "http.request", "body": body, "more_body": False}
        looks += 1
        if looks - 1 < gone_at:
            await asyncio.sleep(3600)  # still there: the look gives up at once
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/datasets", "raw_path": b"/datasets", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("test", 80),
        "headers": [(k.encode(), v.encode()) for k, v in request.headers.items()],
    }  # fmt: skip
    asyncio.run(create_app(settings, run_migrations=False)(scope, receive, send))
    assert sent[0]["status"] == 499 and looks == gone_at + 1
    assert datasets.list_page(engine, owner=None, limit=10, cursor=None) == ([], None)


# --- files that are refused --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "form", "words"),
    [
        (b"a,b,y\n1,2,3\n4,5,6\n7,8\n", {}, ["row 4 has 2 cells, the header has 3"]),
        (b"a,b,y\n1,2,3\n4,5,6,7\n", {}, ["row 3 has 4 cells, the header has 3"]),
        (b"age,y\n1,2\nabc,3\n", {}, ["row 3, column 'age': 'abc' is not a number"]),
        (b"age,y\n1,2\n4,\n", {}, ["row 3, column 'y': is empty"]),
        (b"x,y\n1,2\n3,4\n5,6\nnan,1\n", {}, ["row 5, column 'x': nan is not a finite number"]),
        (b"x,y\n1,-inf\n", {}, ["row 2, column 'y': -inf is not a finite number"]),
        (b"x,y\n1,1e999\n", {}, ["row 2, column 'y': inf is not a finite number"]),
        (b"x,y\n1,Infinity\n", {}, ["row 2, column 'y': inf is not a finite number"]),
        (b"", {}, ["empty", "header"]),
        (b"x,y\n", {}, ["no rows"]),
        (b"x,y\n\n\n", {}, ["no rows"]),
        (b"\nx,y\n1,2\n", {}, ["row 1 is blank"]),
        (b"x,y\n1,2\n", {"target": "price"}, ["no column 'price'", "'x', 'y'"]),
        (b"x,y,x\n1,2,3\n", {}, ["names column 'x' twice"]),
        (b"x,,y\n1,2,3\n", {}, ["column 2 of the header (row 1) has no name"]),
        (b"y\n1\n2\n", {}, ["one column ('y')", "feature"]),
        (b"x,y\n1,2\n3,\xff\n", {}, ["not UTF-8", "row 3"]),
        (b'x,y\n1,"2\n', {}, ["row 2 is not valid CSV", "unexpected end"]),
        (b'x,y\n"1"2,3\n', {}, ["row 2 is not valid CSV"]),
    ],
)
def test_bad_files_answer_422_naming_the_row_or_column(
    client: TestClient, content: bytes, form: dict[str, str], words: list[str]
) -> None:
    detail = refused(client, content, form=form)
    for word in words:
        assert word in detail, detail
    assert client.get("/datasets").json()["items"] == []  # nothing stored


def test_a_sum_that_overflows_is_not_mistaken_for_inf() -> None:
    parsed = uploads.parse_csv(b"x,y\n1e308,1e308\n", target=None, limits=uploads.Limits(rows=10))
    assert parsed.x[0, 0] == 1e308 and parsed.y[0] == 1e308


# --- limits ------------------------------------------------------------------------------


@pytest.fixture
def small(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, max_upload_bytes=1000, max_rows=5)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_file_past_the_upload_limit_is_413(small: TestClient) -> None:
    content = b"x,y\n" + b"1,2\n" * 300  # 1204 bytes: past the upload, within the framing
    detail = refused(small, content, status=413)
    assert detail == "the upload is larger than 1000 bytes (DESCENT_MAX_UPLOAD_BYTES)"
    assert small.get("/datasets").json()["items"] == []


def test_a_body_past_the_limit_is_413_before_the_route(small: TestClient) -> None:
    big = b"x,y\n" + b"1,2\n" * (FRAMING_BYTES // 4 + 300)
    response = upload(small, big)  # declares its Content-Length
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the request body is larger than 1000 bytes (DESCENT_MAX_UPLOAD_BYTES)"
    )
    chunks = (b"x" * 10_000 for _ in range(10))  # chunked: no Content-Length
    response = small.post("/jobs", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1000 bytes" in response.json()["detail"]


def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    pulled = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] == "http.request":  # read to the end (a disconnect)
            pass
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}  # never ends

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    limited = BodySizeLimit(app, max_bytes=250, framing=0)
    asyncio.run(limited({"type": "http", "headers": []}, receive, send))
    assert pulled == 3  # 300 bytes: one chunk past the limit, no more
    assert sent[0]["status"] == 413 and b"250 bytes" in sent[1]["body"]


def test_rows_past_the_limit_are_422(small: TestClient) -> None:
    assert upload(small, b"x,y\n" + b"1,2\n" * 5).status_code == 201
    detail = refused(small, b"x,y\n" + b"1,2\n" * 6)
    assert detail == "more than 5 rows; the limit is 5 (DESCENT_MAX_ROWS)"
    assert len(small.get("/datasets").json()["items"]) == 1


def wide(columns: int) -> bytes:
    """A header of `columns` distinct names, then one row of zeros."""
    header = ",".join(f"c{i}" for i in range(columns))
    return f"{header}\n{','.join('0' * columns)}\n".encode()


def test_a_header_past_the_column_limit_is_422_at_once(client: TestClient) -> None:
    content = wide(100_000)  # 0.69 MB: a header today's limit is far below
    start = time.perf_counter()
    detail = refused(client, content)
    assert time.perf_counter() - start < 5
    assert detail == (
        "the header (row 1) has 100000 columns; the limit is 10000 (DESCENT_MAX_COLUMNS)"
    )
    assert client.get("/datasets").json()["items"] == []


def test_the_column_limit_is_a_setting(db_url: str) -> None:
    settings = Settings(database_url=db_url, max_columns=3)
    with TestClient(create_app(settings)) as client:
        assert upload(client, b"a,b,y\n1,2,3\n").status_code == 201
        detail = refused(client, b"a,b,c,y\n1,2,3,4\n")
        assert detail == "the header (row 1) has 4 columns; the limit is 3 (DESCENT_MAX_COLUMNS)"


def test_a_wide_header_is_checked_in_linear_time() -> None:
    # a quadratic look for duplicates takes minutes on 100,000 columns
    limits = uploads.Limits(columns=100_000)
    start = time.perf_counter()
    parsed = uploads.parse_csv(wide(100_000), target="c5", limits=limits)
    assert time.perf_counter() - start < 5
    assert parsed.x.shape == (1, 99_999) and parsed.target == "c5"
    duplicated = wide(100_000).replace(b",c99999\n", b",c3\n", 1)
    with pytest.raises(InvalidUpload, match="names column 'c3' twice"):
        uploads.parse_csv(duplicated, target=None, limits=limits)


def test_values_past_the_limit_are_422_as_soon_as_they_pass_it(db_url: str) -> None:
    settings = Settings(database_url=db_url, max_values=10)
    with TestClient(create_app(settings)) as client:
        assert upload(client, b"a,b,c,y\n" + b"1,2,3,4\n" * 3).status_code == 201  # 9 values
        # row 6 is broken, but the parse stops at row 5, where the count passes the limit
        detail = refused(client, b"a,b,c,y\n" + b"1,2,3,4\n" * 4 + b"oops\n")
        assert detail == (
            "more than 10 values: 4 rows of 3 features make 12; the limit is 10 rows times"
            " features (DESCENT_MAX_VALUES)"
        )
        assert len(client.get("/datasets").json()["items"]) == 1


def test_a_missing_target_lists_a_few_columns_only() -> None:
    with pytest.raises(InvalidUpload) as caught:
        uploads.parse_csv(wide(5000), target="price", limits=uploads.Limits())
    message = str(caught.value)
    assert message.startswith("no column 'price'; the columns are 'c0', 'c1'")
    assert message.endswith(f"'c{uploads.LISTED - 1}' and {5000 - uploads.LISTED} more")


def test_parse_errors_are_invalid_upload() -> None:
    with pytest.raises(InvalidUpload, match="row 3"):
        uploads.parse_csv(b"x,y\n1,2\n3\n", target=None, limits=uploads.Limits(rows=10))


def test_a_large_file_parses_in_reasonable_time(client: TestClient, engine: Engine) -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(200_000, 5))
    lines = [",".join(repr(v) for v in row) for row in table.tolist()]
    raw = ("a,b,c,d,y\n" + "\n".join(lines) + "\n").encode()
    start = time.perf_counter()
    parsed = uploads.parse_csv(raw, target=None, limits=uploads.Limits())
    parse_s = time.perf_counter() - start
    np.testing.assert_array_equal(parsed.x, table[:, :4])  # repr round-trips exactly
    start = time.perf_counter()
    body = created(client, raw)
    upload_s = time.perf_counter() - start
    _, x, y = datasets.load(engine, dataset_id=body["id"], owner=None)
    np.testing.assert_array_equal(y, table[:, 4])
    print(
        f"\n200,000 x 5 ({len(raw) / 1e6:.1f} MB): parse {parse_s:.2f}s,"
        f" upload with parse and store {upload_s:.2f}s"
    )
