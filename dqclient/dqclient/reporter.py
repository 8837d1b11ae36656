"""Reporter: queue readings in the request path, send them to the registry from a thread.

The request path only appends a tuple to a bounded deque (drop and count when full, never
block). A daemon thread turns tuples into readings, batches them (at most `batch_size`, or
whatever is pending every `flush_interval` seconds) and posts them. Every reading gets its
idempotency key from a counter taken when it is queued, so a retried or regrouped batch is
counted as duplicates by the registry, never twice.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any

from .measure import UNKNOWN
from .transport import HttpTransport, Response, Transport

__version__ = "0.1.0"

log = logging.getLogger("dqclient")

# The registry marks 429 and 503 retryable (and, in its body, a 409 for an Idempotency-Key
# still running). 502 and 504 come from a proxy in front of it, not from the registry: they
# are network failures, and retrying them is safe because every reading carries its
# idempotency key.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses whose problem lists the offending readings by index: the rest of the batch is
# resent without them (the registry rejects a batch as a whole).
SALVAGE_STATUSES = frozenset({400, 403})
MAX_SALVAGE_ROUNDS = 3
# A route, signal or environment the registry refused is refused for every reading that
# names it (the registry lists at most 100 errors per batch, so the indices alone are not
# enough), and is dropped here for a while instead of costing a round trip per batch.
# After REFUSAL_TTL it is tried again: the owner may have registered it meanwhile.
REFUSAL_TTL = 600.0
REGISTRY_MAX_BATCH = 1000

_OK, _RETRY, _REJECT, _SALVAGE, _SPLIT = range(5)

# A request's measurement: (seq, observed_at, method, route, cache_status, ms, error, db_calls)
# A custom reading:       (seq, observed_at, method, route, cache_status, signal, value)
_REQUEST_ENTRY_LEN = 8


# The numeric options: (default, lowest, highest, whole number, what it counts). A value
# that is not a number disables the reporter with one log line; a number outside the range
# is brought into it with a warning (as earlier releases clamped batch_size and max_queue),
# so an upgrade never stops a host's reporting. It never raises into the host: the highest
# values keep every wait within what threading and the clock accept.
# flush_interval has a floor: at 0 the thread would spin on a whole core (at 0.05 it wakes
# 20 times a second, a few microseconds each).
OPTIONS: dict[str, tuple[float, float, float, bool, str]] = {
    "batch_size": (500, 1, REGISTRY_MAX_BATCH, True, "readings"),
    "flush_interval": (5.0, 0.05, 3600.0, False, "seconds"),
    "max_queue": (10_000, 1, 10_000_000, True, "requests"),
    "timeout": (5.0, 0.1, 600.0, False, "seconds"),
    "max_retries": (6, 0, 1000, True, "retries"),
    "backoff_base": (0.5, 0.0, 3600.0, False, "seconds"),
    "backoff_max": (30.0, 0.0, 3600.0, False, "seconds"),
    "max_retry_after": (300.0, 0.0, 86_400.0, False, "seconds"),
    "shutdown_timeout": (5.0, 0.0, 3600.0, False, "seconds"),
}


def _checked_option(name: str, value: Any) -> tuple[float, str | None]:
    """The option's value as an int or float within its range, and a warning when it had
    to be brought into it; ValueError naming it, what it expects and what it received when
    it is not a (finite, whole where it counts) number."""
    _default, low, high, whole, unit = OPTIONS[name]
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number) or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ValueError(
            f"{name} expects {kind} of {unit} from {low:g} to {high:g}; received {value!r}"
        )
    kept = min(max(number, low), high)
    warning = None
    if kept != number:
        warning = f"{name} {value!r} is out of range ({low:g} to {high:g} {unit}); using {kept:g}"
    return (int(kept) if whole else kept), warning


def _bare_key(key: str | None) -> str | None:
    """The key without an `Authorization` scheme pasted along with it ("Bearer dq_...")."""
    if not isinstance(key, str):
        return None
    key = key.strip()
    scheme, _, rest = key.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    return key


def _iso(epoch: float) -> str:
    millis = int((epoch % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{millis:03d}Z"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class Reporter:
    """Collects readings and posts them to the registry in the background.

    Arguments default to the environment: `DQ_URL` (the registry's base URL),
    `DQ_KEY` (the service key), `DQ_ENVIRONMENT` (default "production"), `DQ_RELEASE`.
    Without a URL or a key the reporter is disabled: it accepts readings and drops them.

    `transport`, `clock`, `now`, `sleep` and `random` are there for tests; with
    `start=False` no thread runs and `run_pending()`/`flush()`/`close()` do the work
    in the caller's thread.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        environment: str | None = None,
        release: str | None = None,
        *,
        batch_size: int = 500,
        flush_interval: float = 5.0,
        max_queue: int = 10_000,
        timeout: float = 5.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 300.0,
        shutdown_timeout: float = 5.0,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] | None = None,
        random: Callable[[], float] = random.random,
        start: bool = True,
        instance_id: str | None = None,
    ) -> None:
        url = url or _env("DQ_URL")
        self.key = _bare_key(key or _env("DQ_KEY"))
        self.environment = environment or _env("DQ_ENVIRONMENT") or "production"
        self.release = release or _env("DQ_RELEASE")
        problem = None
        given = {
            "batch_size": batch_size,
            "flush_interval": flush_interval,
            "max_queue": max_queue,
            "timeout": timeout,
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "max_retry_after": max_retry_after,
            "shutdown_timeout": shutdown_timeout,
        }
        for name, value in given.items():
            try:
                number, warning = _checked_option(name, value)
            except ValueError as exc:
                problem = problem or str(exc)
                number, warning = OPTIONS[name][0], None  # a disabled reporter stays usable
            if warning:
                log.warning("dqclient: %s", warning)
            setattr(self, name, number)
        self._clock = clock
        self._now = now
        self._sleep = sleep or self._interruptible_sleep
        self._random = random
        self._autostart = start
        self.instance_id = instance_id or self._new_instance_id()

        self.enabled = False
        self.url = url
        if problem is None and transport is None and url:
            try:
                transport = HttpTransport(url)
                self.url = transport.url
            except ValueError as exc:
                problem = str(exc)
        self._transport = transport
        if problem is not None:
            log.error("dqclient: reporting disabled: %s", problem)
        elif transport is None or not self.key:
            log.warning("dqclient: DQ_URL or DQ_KEY is not set; readings will not be reported")
        else:
            self.enabled = True
            if not self.key.startswith("dq_"):
                log.warning(
                    "dqclient: DQ_KEY does not look like a service key (expected "
                    "dq_<prefix>.<secret>, as create_service_key prints it); the registry "
                    "will likely refuse it"
                )

        self._reset_state()
        self._accepting = self.enabled
        self._closed = False
        if self.enabled:
            _live.add(self)
            if start:
                self._start_thread()

    # -- the request path -------------------------------------------------------------

    def record_request(
        self,
        method: str,
        route: str,
        elapsed_ms: float,
        error: int,
        cache_status: str = UNKNOWN,
        db_calls: int | None = None,
    ) -> None:
        """Queue one request's readings (response_time_ms, error_rate, db_calls). Never blocks."""
        if not self._accepting:
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            self._drop()
            return
        queue.append(
            (next(self._seq), self._now(), method, route, cache_status, elapsed_ms, error, db_calls)
        )
        if len(queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        if self._restart:
            self._start_thread()

    def record(
        self,
        route: str,
        signal: str,
        value: float,
        *,
        method: str = "GET",
        cache_status: str = UNKNOWN,
        observed_at: datetime | float | None = None,
    ) -> bool:
        """Queue one reading of any signal. Returns False when it was not queued."""
        if not self._accepting:
            return False
        try:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("value must be finite")
            if observed_at is None:
                when = self._now()
            elif isinstance(observed_at, datetime):
                when = observed_at.timestamp()
            else:
                when = float(observed_at)
        except (TypeError, ValueError, OverflowError) as exc:
            self._log_once(
                ("invalid", signal),
                logging.WARNING,
                "dqclient: dropping reading of %s for %s: %s",
                signal,
                route,
                exc,
            )
            return False
        queue = self._queue
        if len(queue) >= self.max_queue:
            self._drop()
            return False
        queue.append((next(self._seq), when, method, route, cache_status, signal, value))
        if len(queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        if self._restart:
            self._start_thread()
        return True

    def _drop(self) -> None:
        with self._lock:
            self._dropped += 1
            first = self._dropped == 1
        if first:
            log.warning(
                "dqclient: queue full (%d); dropping readings until the registry catches up",
                self.max_queue,
            )

    # -- the public controls ------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since start.

        queued, dropped and pending count measurements (one per request, or per `record()`
        call); sent, duplicates, rejected, failed and unsent count readings (a request makes
        two or three). pending is what waits in the queue now (at most `max_queue`), unsent
        the readings taken from it and not yet accepted.
        """
        with self._lock:
            return {
                "queued": self._expanded + len(self._queue),
                "dropped": self._dropped,
                "sent": self._sent,
                "duplicates": self._duplicates,
                "rejected": self._rejected,
                "failed": self._failed,
                "retries": self._retries,
                "batches": self._batches,
                "pending": len(self._queue),
                "unsent": len(self._carry),
            }

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far. Returns False if it did not finish in time."""
        if not self.enabled or self._closed:
            return not self._queue and not self._carry
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            done = threading.Event()
            with self._lock:
                self._waiters.append(done)
            self._wake.set()
            return done.wait(self.shutdown_timeout if timeout is None else timeout)
        try:
            self.run_pending(force=True)
        except Exception:
            log.exception("dqclient: flush failed")
        return not self._queue and not self._carry

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting readings, send what is queued within `timeout` seconds, stop."""
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        _live.discard(self)
        if not self.enabled:
            return
        timeout = self.shutdown_timeout if timeout is None else float(timeout)
        self._deadline = self._clock() + timeout
        self._closing = True
        self._wake.set()
        self._interrupt.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            if thread is not threading.current_thread():
                # The thread honours the deadline itself, except inside a request to a
                # registry that does not answer: that request is cut at the deadline.
                thread.join(timeout)
                if thread.is_alive():
                    abort = getattr(self._transport, "abort", None)
                    if abort is not None:
                        with contextlib.suppress(Exception):
                            abort()
                    thread.join(1.0)
            return
        try:
            self._drain_for_close()
        except Exception:
            log.exception("dqclient: final flush failed")

    # -- the background side -----------------------------------------------------------

    def run_pending(self, force: bool = False) -> None:
        """One pass: send full batches, and everything pending when the interval is due.

        Readings are built from the queue one batch at a time, so memory stays bounded by
        `max_queue` plus one batch however far behind the registry is.
        """
        due = force or self._clock() >= self._next_due
        # When due, send what was queued when the pass began, not what keeps arriving.
        budget = len(self._queue) if due else -1
        while not self._closing:
            budget = self._fill(budget)
            if len(self._carry) >= self.batch_size or (due and self._carry):
                self._deliver(self._take())
            else:
                break
        if due:
            self._next_due = self._clock() + self.flush_interval

    def _run(self) -> None:
        while not self._closing:
            waiters = self._take_waiters()
            if not waiters:
                self._wake.wait(max(0.0, self._next_due - self._clock()))
                self._wake.clear()
                waiters = self._take_waiters()
            if self._closing:
                self._release(waiters)
                break
            try:
                self.run_pending(force=bool(waiters))
            except Exception:
                self._log_once(("bug",), logging.ERROR, "dqclient: reporter error", exc_info=True)
            self._release(waiters)
        try:
            self._drain_for_close()
        except Exception:
            log.exception("dqclient: final flush failed")
        finally:
            self._release(self._take_waiters())

    def _drain_for_close(self) -> None:
        while True:
            self._fill(-1)
            if not self._carry:
                return
            if self._clock() >= self._deadline:
                left = len(self._carry) + sum(map(_reading_count, self._queue))
                self._queue.clear()
                self._carry = []
                self._give_up(left, "shutdown deadline passed")
                return
            self._deliver(self._take())

    def _fill(self, budget: int) -> int:
        """Build readings from queued entries until a batch is full; -1 means no budget."""
        queue, carry, readings = self._queue, self._carry, self._readings
        count = 0
        refused = 0
        while queue and budget and len(carry) < self.batch_size:
            try:
                entry = queue.popleft()
            except IndexError:
                break
            built = readings(entry)
            if self._refused:
                kept = [reading for reading in built if not self._is_refused(reading)]
                refused += len(built) - len(kept)
                built = kept
            carry.extend(built)
            count += 1
            budget -= 1
        if count:
            with self._lock:
                self._expanded += count
                self._rejected += refused
        return budget

    def _readings(self, entry: tuple) -> list[dict[str, Any]]:
        key = f"{self.instance_id}:{entry[0]}"
        base = {
            "method": entry[2],
            "route": entry[3],
            "environment": self.environment,
            "observed_at": _iso(entry[1]),
            "cache_status": entry[4] or UNKNOWN,
        }
        if self.release:
            base["release"] = self.release
        if len(entry) == _REQUEST_ENTRY_LEN:
            out = [
                {
                    **base,
                    "signal": "response_time_ms",
                    "value": round(entry[5], 3),
                    "idempotency_key": key + ":t",
                },
                {**base, "signal": "error_rate", "value": entry[6], "idempotency_key": key + ":e"},
            ]
            if entry[7] is not None:
                out.append(
                    {**base, "signal": "db_calls", "value": entry[7], "idempotency_key": key + ":d"}
                )
            return out
        return [{**base, "signal": entry[5], "value": entry[6], "idempotency_key": key}]

    def _take(self) -> list[dict[str, Any]]:
        batch = self._carry[: self.batch_size]
        self._carry = self._carry[self.batch_size :]
        return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """Post one batch: retry what is retryable, salvage what is partly invalid."""
        batch_key = self._next_batch_key()
        attempt = 0
        salvage_rounds = 0
        while batch:
            timeout = self._attempt_timeout()
            if timeout is None:
                self._give_up(len(batch), "shutdown deadline passed")
                return
            outcome, retry_after, bad = self._post(batch, batch_key, timeout)
            if outcome == _OK:
                return
            if outcome == _RETRY:
                if attempt >= self.max_retries:
                    self._give_up(len(batch), f"still failing after {attempt + 1} attempts")
                    return
                delay = self.backoff_delay(attempt, retry_after)
                attempt += 1
                with self._lock:
                    self._retries += 1
                if not self._wait(delay):
                    self._give_up(len(batch), "shutdown deadline passed")
                    return
                continue
            if outcome == _SPLIT:
                half = len(batch) // 2
                self._deliver(batch[:half])
                self._deliver(batch[half:])
                return
            if outcome == _SALVAGE and salvage_rounds < MAX_SALVAGE_ROUNDS:
                salvage_rounds += 1
                with self._lock:
                    self._rejected += len(bad)
                batch = [r for i, r in enumerate(batch) if i not in bad]
                # Another body needs another Idempotency-Key (same key + new body is 422).
                batch_key = self._next_batch_key()
                continue
            with self._lock:
                self._rejected += len(batch)
            return

    def _post(self, batch: list[dict[str, Any]], batch_key: str, timeout: float):
        body = json.dumps({"readings": batch}, separators=(",", ":"), allow_nan=False).encode()
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Accept": "application/json, application/problem+json",
            "User-Agent": f"dqclient/{__version__}",
            "Idempotency-Key": batch_key,
        }
        with self._lock:
            self._batches += 1
        try:
            response = self._transport(body, headers, timeout)
        except (OSError, HTTPException) as exc:
            self._log_once(
                ("network", type(exc).__name__),
                logging.WARNING,
                "dqclient: cannot reach the registry at %s (%s: %s); will retry",
                self.url,
                type(exc).__name__,
                exc,
            )
            return _RETRY, None, None
        except Exception as exc:
            self._log_once(
                ("transport", type(exc).__name__),
                logging.ERROR,
                "dqclient: transport error; will retry",
                exc_info=True,
            )
            return _RETRY, None, None
        return self._judge(response, batch)

    def _judge(self, response: Response, batch: list[dict[str, Any]]):
        status = response.status
        problem = _parse_json(response.body)
        if 200 <= status < 300:
            accepted = _int(problem.get("accepted"), len(batch))
            duplicates = _int(problem.get("duplicates"), 0)
            with self._lock:
                self._sent += accepted
                self._duplicates += duplicates
            return _OK, None, None
        if status in RETRYABLE_STATUSES or problem.get("retryable") is True:
            self._log_once(
                ("retryable", status, problem.get("type")),
                logging.INFO,
                "dqclient: registry answered %s (%s); will retry",
                status,
                problem.get("title") or problem.get("detail") or "no detail",
            )
            return _RETRY, self._retry_after(response.headers.get("retry-after")), None
        if status == 413 and len(batch) > 1:
            return _SPLIT, None, None
        self._log_problem(status, problem)
        if status in SALVAGE_STATUSES:
            bad = self._refused_indices(problem.get("errors"), batch)
            if bad and len(bad) < len(batch):
                return _SALVAGE, None, bad
        return _REJECT, None, None

    def _refused_indices(self, errors: Any, batch: list[dict[str, Any]]) -> set[int]:
        """Indices of the readings the problem refuses, remembering refused names."""
        bad: set[int] = set()
        names: set[tuple] = set()
        for error in errors if isinstance(errors, list) else ():
            index = error.get("index") if isinstance(error, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(batch):
                continue
            bad.add(index)
            name = _refusal_name(error.get("field"), batch[index])
            if name is not None:
                names.add(name)
        if names:
            until = self._clock() + REFUSAL_TTL
            for name in names:
                self._refused[name] = until
            bad.update(i for i, reading in enumerate(batch) if self._is_refused(reading))
            kept = [reading for reading in self._carry if not self._is_refused(reading)]
            if len(kept) < len(self._carry):
                with self._lock:
                    self._rejected += len(self._carry) - len(kept)
                self._carry = kept
        return bad

    def _is_refused(self, reading: dict[str, Any]) -> bool:
        refused = self._refused
        for name in (
            ("route", reading["method"], reading["route"]),
            ("signal", reading["signal"]),
            ("environment", reading["environment"]),
        ):
            until = refused.get(name)
            if until is not None:
                if until > self._clock():
                    return True
                del refused[name]
        return False

    def _log_problem(self, status: int, problem: dict) -> None:
        errors = problem.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        kind = ("rejected", status, problem.get("type"), first.get("field"), first.get("message"))
        summary = "; ".join(
            "reading {index} {field}: {message} (expected {expected}, received {received})".format(
                **{k: e.get(k) for k in ("index", "field", "message", "expected", "received")}
            )
            for e in errors[:3]
            if isinstance(e, dict)
        )
        self._log_once(
            kind,
            logging.ERROR,
            "dqclient: registry rejected readings with %s %s: %s%s",
            status,
            problem.get("title") or "",
            problem.get("detail") or "",
            f" [{summary}]" if summary else "",
        )

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (half fixed, half random), at least Retry-After."""
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        delay = delay / 2 + self._random() * delay / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def _retry_after(self, value: str | None) -> float | None:
        if not value:
            return None
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - self._now())

    def _attempt_timeout(self) -> float | None:
        if self._deadline is None:
            return self.timeout
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            return None
        return min(self.timeout, remaining)

    def _wait(self, delay: float) -> bool:
        """Sleep `delay` seconds; False when that would run past the shutdown deadline."""
        end = self._clock() + delay
        while True:
            if self._deadline is not None and end > self._deadline:
                return False
            remaining = end - self._clock()
            if remaining <= 0:
                return True
            self._sleep(remaining)

    def _interruptible_sleep(self, seconds: float) -> None:
        # close() interrupts a backoff so the shutdown deadline is checked at once.
        if self._closing:
            time.sleep(seconds)
        else:
            self._interrupt.wait(seconds)

    def _give_up(self, count: int, reason: str) -> None:
        with self._lock:
            self._failed += count
        self._log_once(
            ("give-up", reason),
            logging.WARNING,
            "dqclient: dropping %d readings: %s",
            count,
            reason,
        )

    def _log_once(self, kind: tuple, level: int, msg: str, *args, exc_info: bool = False) -> None:
        if kind in self._logged:
            log.debug(msg, *args)
            return
        self._logged.add(kind)
        log.log(level, msg, *args, exc_info=exc_info)

    def _next_batch_key(self) -> str:
        return f"{self.instance_id}:b{next(self._batch_seq)}"

    def _take_waiters(self) -> list[threading.Event]:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        return waiters

    @staticmethod
    def _release(waiters: list[threading.Event]) -> None:
        for waiter in waiters:
            waiter.set()

    # -- lifecycle ----------------------------------------------------------------------

    @staticmethod
    def _new_instance_id() -> str:
        host = socket.gethostname().split(".")[0][:32] or "host"
        return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"

    def _reset_state(self) -> None:
        self._queue: deque[tuple] = deque()
        self._carry: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._batch_seq = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        # The thread wakes when roughly one batch is queued (a request is 2-3 readings).
        self._wake_at = max(1, self.batch_size // 3)
        self._waiters: list[threading.Event] = []
        self._logged: set[tuple] = set()
        self._refused: dict[tuple, float] = {}
        self._thread: threading.Thread | None = None
        self._restart = False
        self._closing = False
        self._deadline: float | None = None
        self._next_due = self._clock() + self.flush_interval
        self._expanded = self._dropped = self._sent = self._duplicates = 0
        self._rejected = self._failed = self._retries = self._batches = 0

    def _start_thread(self) -> None:
        with self._lock:
            self._restart = False
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="dqclient", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # The parent keeps (and sends) what it had queued; the child starts empty, under a
        # new instance id so the two never produce the same idempotency keys.
        accepting = self._accepting
        self.instance_id = self._new_instance_id()
        self._reset_state()
        self._accepting = accepting
        self._restart = accepting and self._autostart


_live: weakref.WeakSet[Reporter] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for reporter in list(_live):
        # Never let a reporter's trouble change how the service exits.
        with contextlib.suppress(Exception):
            reporter.close()


def _after_fork_in_child() -> None:
    for reporter in list(_live):
        reporter._after_fork()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _refusal_name(field: Any, reading: dict[str, Any]) -> tuple | None:
    if field in ("route", "method"):
        return ("route", reading.get("method"), reading.get("route"))
    if field in ("signal", "environment"):
        return (field, reading.get(field))
    return None


def _reading_count(entry: tuple) -> int:
    if len(entry) == _REQUEST_ENTRY_LEN:
        return 2 if entry[7] is None else 3
    return 1


def _parse_json(body: bytes) -> dict:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


_default: Reporter | None = None
_default_lock = threading.Lock()


def get_reporter() -> Reporter:
    """The process-wide reporter, configured from the environment on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Reporter()
    return _default


def configure(**kwargs: Any) -> Reporter:
    """Replace the process-wide reporter (closing the old one) with one built from kwargs."""
    global _default
    with _default_lock:
        old, _default = _default, Reporter(**kwargs)
    if old is not None:
        old.close()
    return _default
