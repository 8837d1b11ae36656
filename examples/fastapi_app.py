"""A small FastAPI blog instrumented with dqclient.

Its routes are the demo `blog` service's in the registry (`make run` loads them):
GET /posts/{slug} and GET /tags/{tag} (behind a tiny in-process cache that says HIT or
MISS in X-Cache, as a CDN would), POST /comments, GET /feed.xml, and /health, which is
not measured. Its data is in SQLite through SQLAlchemy, so db_calls is reported too.

    DQ_URL=http://127.0.0.1:8000 DQ_KEY=dq_... DQ_ENVIRONMENT=staging DQ_RELEASE=1.9.0 \
        .venv/bin/python examples/fastapi_app.py          # serves on 127.0.0.1:8001

Without DQ_URL/DQ_KEY it runs the same and reports nothing.
"""

import sys
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, Field
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
    conn.execute(text("CREATE TABLE post (slug TEXT PRIMARY KEY, title TEXT, tag TEXT)"))
    conn.execute(text("CREATE TABLE comment (post TEXT, author TEXT, text TEXT)"))
    conn.execute(
        text("INSERT INTO post VALUES (:slug, :title, :tag)"),
        [
            {"slug": "hello-world", "title": "Hello, world", "tag": "news"},
            {"slug": "measure-before-you-change", "title": "Measure first", "tag": "python"},
            {"slug": "one-variable-at-a-time", "title": "One change at a time", "tag": "python"},
        ],
    )

app = FastAPI(title="dqclient example blog")
app.add_middleware(DQMiddleware, exclude=["/health"], engine=engine)

# Stands in for a CDN: the first read of a page goes to the "origin", later reads are hits.
_cache: dict[str, object] = {}


def cached(key: str, response: Response, load):
    if key in _cache:
        response.headers["X-Cache"] = "HIT"
        return _cache[key]
    time.sleep(0.02)  # the origin is slower than the cache
    _cache[key] = value = load()
    response.headers["X-Cache"] = "MISS"
    return value


class Comment(BaseModel):
    post: str
    author: str
    text: str = Field(max_length=5000)


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/posts/{slug}")
def read_post(slug: str, response: Response):
    def load():
        with engine.connect() as conn:
            post = conn.execute(text("SELECT * FROM post WHERE slug = :s"), {"s": slug}).first()
            if post is None:
                raise HTTPException(404, "no such post")
            count = conn.execute(text("SELECT count(*) FROM comment WHERE post = :s"), {"s": slug})
            return {**post._asdict(), "comments": count.scalar_one()}

    return cached(f"post:{slug}", response, load)


@app.get("/tags/{tag}")
def read_tag(tag: str, response: Response):
    def load():
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT slug, title FROM post WHERE tag = :t"), {"t": tag})
            return [row._asdict() for row in rows]

    return cached(f"tag:{tag}", response, load)


@app.get("/feed.xml")
def feed():
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT slug, title FROM post ORDER BY slug")).all()
    items = "".join(
        f"<item><title>{r.title}</title><link>/posts/{r.slug}</link></item>" for r in rows
    )
    return Response(f"<rss><channel>{items}</channel></rss>", media_type="application/rss+xml")


@app.post("/comments", status_code=201)
def add_comment(comment: Comment):
    with engine.begin() as conn:
        found = conn.execute(text("SELECT 1 FROM post WHERE slug = :s"), {"s": comment.post})
        if found.first() is None:
            raise HTTPException(404, "no such post")
        conn.execute(
            text("INSERT INTO comment VALUES (:post, :author, :text)"), comment.model_dump()
        )
    _cache.pop(f"post:{comment.post}", None)
    return {"post": comment.post, "author": comment.author}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8001)
