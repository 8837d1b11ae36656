"""A small FastAPI service instrumented with dqclient.

It has /health (not measured), GET /posts, GET /posts/{slug} (behind a tiny in-process
cache that says HIT or MISS in X-Cache, as a CDN would) and POST /posts/{slug}/comments,
with its data in SQLite through SQLAlchemy so db_calls is reported too.

    DQ_URL=http://127.0.0.1:8000 DQ_KEY=dq_... DQ_ENVIRONMENT=staging \\
        .venv/bin/python examples/fastapi_app.py          # serves on 127.0.0.1:8001

Without DQ_URL/DQ_KEY it runs the same and reports nothing.
"""

import sys
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

try:
    from dqclient.asgi import DQMiddleware  # installed with `pip install ./dqclient`
except ImportError:  # running from a checkout: use the package beside this file
    sys.modules.pop("dqclient", None)  # the checkout's dqclient/ folder, seen as a namespace
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dqclient"))
    from dqclient.asgi import DQMiddleware

engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
with engine.begin() as conn:
    conn.execute(text("CREATE TABLE post (slug TEXT PRIMARY KEY, title TEXT, body TEXT)"))
    conn.execute(text("CREATE TABLE comment (post TEXT, body TEXT)"))
    conn.execute(
        text("INSERT INTO post VALUES (:slug, :title, :body)"),
        [
            {"slug": "hello-world", "title": "Hello, world", "body": "First post."},
            {"slug": "measure-first", "title": "Measure first", "body": "Then change one thing."},
        ],
    )

app = FastAPI(title="dqclient example")
app.add_middleware(DQMiddleware, exclude=["/health"], engine=engine)

# Stands in for a CDN: the first read of a post goes to the "origin", later reads are hits.
_cache: dict[str, dict] = {}


class Comment(BaseModel):
    body: str


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/posts")
def list_posts():
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT slug, title FROM post ORDER BY slug")).mappings()
        return [dict(row) for row in rows]


@app.get("/posts/{slug}")
def read_post(slug: str, response: Response):
    if slug in _cache:
        response.headers["X-Cache"] = "HIT"
        return _cache[slug]
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM post WHERE slug = :s"), {"s": slug}).mappings()
        post = row.first()
        if post is None:
            raise HTTPException(404, "no such post")
        count = conn.execute(text("SELECT count(*) FROM comment WHERE post = :s"), {"s": slug})
        result = {**post, "comments": count.scalar_one()}
    time.sleep(0.02)  # the origin is slower than the cache
    _cache[slug] = result
    response.headers["X-Cache"] = "MISS"
    return result


@app.post("/posts/{slug}/comments", status_code=201)
def add_comment(slug: str, comment: Comment):
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM post WHERE slug = :s"), {"s": slug}).first()
        if exists is None:
            raise HTTPException(404, "no such post")
        conn.execute(text("INSERT INTO comment VALUES (:s, :b)"), {"s": slug, "b": comment.body})
    _cache.pop(slug, None)
    return {"post": slug, "body": comment.body}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8001)
