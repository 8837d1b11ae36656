"""Settings for bench_ingest.py's server: the project's, plus the naive peer's URL."""

from dqregistry.settings import *  # noqa: F403

ROOT_URLCONF = "ingest_naive_urls"
