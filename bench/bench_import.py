"""Benchmark `import_content`: 10,000 documents in the sample's format, on SQLite and PostgreSQL.

    python bench/bench_import.py [--count 10000]        # or: make bench-import

Generates the documents once into a temporary directory, then for each database runs a
fresh process that creates a throwaway database (SQLite file in the temp directory;
PostgreSQL database `bench_import_<name>` on the server of BENCH_POSTGRES_URL, default
DATABASE_URL when it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/postgres),
migrates it, imports the documents, imports them again unchanged, and drops it.
Targets: >= 500 documents/s for the import, >= 2,000 documents/s for the re-import.
Exits 1 when a target is missed.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "signals_app" / "demo" / "content" / "anp-ref-022359-4690.txt"
IMPORT_TARGET, REIMPORT_TARGET = 500, 2000

PROBLEMS = [
    "tracking data quality signals",
    "slow database queries",
    "cache invalidation",
    "flaky deployments",
    "noisy error budgets",
]
STACKS = ["python services", "django apps", "fastapi services", "celery workers"]


def generate(directory, count, seed=1):
    """Write `count` documents: the sample with its reference, hash, title and meta varied."""
    template = SAMPLE.read_text(encoding="utf-8")
    rng = random.Random(seed)
    for index in range(count):
        problem, stack = rng.choice(PROBLEMS), rng.choice(STACKS)
        reference = f"anp-ref-{index:06d}-{rng.randrange(10_000):04d}"
        text = (
            template.replace("tracking data quality signals", problem)
            .replace("python services", stack)
            .replace("anp-ref-022359-4690", reference)
            .replace("d1d09bf4540df2d21afa925c", f"{rng.getrandbits(96):024x}")
            .replace("alphanode-022359", f"alphanode-{index:06d}")
            .replace("seed: 22359", f"seed: {index}")
            .replace("view count617056", f"view count{rng.randrange(1_000_000)}")
        )
        for name, default in (("quality", 80), ("freshness", 90), ("depth", 96), ("clarity", 77)):
            text = text.replace(f"{name}: {default}", f"{name}: {rng.randrange(40, 101)}")
        if rng.random() < 0.1:
            text = text.replace("needs human review: 0", "needs human review: 1")
        (directory / f"{reference}.txt").write_text(text, encoding="utf-8")


def run_one(directory, count):
    """In a child process: a fresh database, then the import and the unchanged re-import."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dqregistry.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from signals_app.models import ContentItem, Reading

    database = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        database["TEST"]["NAME"] = str(Path(directory).parent / "bench.sqlite3")
    else:
        database["TEST"]["NAME"] = f"bench_import_{database['NAME']}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        figures = {}
        for label in ("import", "reimport"):
            started = time.perf_counter()
            with open(os.devnull, "w") as quiet:
                call_command("import_content", directory, stdout=quiet, stderr=quiet)
            figures[label] = time.perf_counter() - started
        figures["items"] = ContentItem.objects.count()
        figures["readings"] = Reading.objects.count()
        figures["vendor"] = connection.vendor
    finally:
        connection.creation.destroy_test_db(database["TEST"]["NAME"], verbosity=0)
    print(json.dumps(figures))


def postgres_url():
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    return "postgres://postgres@127.0.0.1:5432/postgres"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_one(args.run, args.count)

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        documents = Path(tmp) / "documents"
        documents.mkdir()
        started = time.perf_counter()
        generate(documents, args.count)
        print(
            f"generated {args.count} documents in the sample's format "
            f"in {time.perf_counter() - started:.1f}s"
        )
        urls = {"sqlite": f"sqlite:///{tmp}/unused.sqlite3", "postgres": postgres_url()}
        for name in args.databases.split(","):
            child = subprocess.run(
                [sys.executable, __file__, "--run", str(documents), "--count", str(args.count)],
                env={**os.environ, "DATABASE_URL": urls[name]},
                capture_output=True,
                text=True,
            )
            if child.returncode != 0:
                reason = (child.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{name}: skipped, the run failed: {reason}")
                ok = False
                continue
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            rate, rerate = args.count / figures["import"], args.count / figures["reimport"]
            ok &= rate >= IMPORT_TARGET and rerate >= REIMPORT_TARGET
            print(
                f"{figures['vendor']:>10}: import {args.count} docs in {figures['import']:.2f}s "
                f"= {rate:,.0f} docs/s (target >= {IMPORT_TARGET:,}) "
                f"{'ok' if rate >= IMPORT_TARGET else 'MISSED'}; "
                f"re-import unchanged in {figures['reimport']:.2f}s = {rerate:,.0f} docs/s "
                f"(target >= {REIMPORT_TARGET:,}) "
                f"{'ok' if rerate >= REIMPORT_TARGET else 'MISSED'}; "
                f"{figures['items']} items, {figures['readings']} readings"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
