"""Forked writers killed with SIGKILL, a live reader, and the verification after each kill.

numpy, apsw, blosc2 and tensordb are imported once by the test process; each
writer is an ``os.fork()`` of it, so a trial costs a fork, not an interpreter
start. The writer runs workload transactions and reports each one to the
parent through a pipe once its commit has returned; the parent kills it at a
random moment, optionally undoes every pack-file change that was not yet
durable (a crash that is also a power loss for pack files, see
``iofs.lose_unsynced``), then verifies the database (``workload.verify``):
every acknowledged transaction present, the one in flight all or nothing,
check() clean after gc(). The database carries over from trial to trial.
"""

from __future__ import annotations

import functools
import json
import os
import random
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tensordb
from crash import iofs, seams, workload
from crash.workload import Model

__all__ = ["Reader", "start_reader", "fork", "run_random_crashes", "RunResult", "run_one"]

_ACK = struct.Struct("<q")
READY = -1


def fork(child: Callable[[], None], err_path: str | None = None) -> int:
    """Run ``child`` in a forked process that never returns into the caller (exit 0, or 1 on an exception)."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        child()
    except BaseException:
        code = 1
        if err_path is not None:
            with open(err_path, "w") as f:
                f.write(traceback.format_exc())
    finally:
        os._exit(code)
    return 0  # not reached


# -- the live reader -------------------------------------------------------------------------

@dataclass
class Reader:
    pid: int
    stop_fd: int
    result_fd: int

    def stop(self, timeout: float = 60.0) -> tuple[int, list[str]]:
        """Stop the reader; returns (trees read, errors)."""
        os.close(self.stop_fd)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.result_fd], [], [], 1.0)[0]:
                data = os.read(self.result_fd, 1 << 16)
                if not data:
                    break
                chunks.append(data)
        os.close(self.result_fd)
        _, status = os.waitpid(self.pid, 0)
        text = b"".join(chunks).decode()
        if not text:
            return 0, [f"the reader died (wait status {status})"]
        result = json.loads(text)
        return result["reads"], result["errors"]


def start_reader(db_path: str, seed: int) -> Reader:
    stop_r, stop_w = os.pipe()
    result_r, result_w = os.pipe()

    def child() -> None:
        os.close(stop_w)
        os.close(result_r)
        reads, errors = workload.reader_loop(db_path, seed, stop_r)
        payload = json.dumps({"reads": reads, "errors": errors[:50]}).encode()
        while payload:
            payload = payload[os.write(result_w, payload):]

    pid = fork(child)
    os.close(stop_r)
    os.close(result_w)
    return Reader(pid, stop_w, result_r)


# -- writers ---------------------------------------------------------------------------------

def _arm(journal: str | None, crash_at: str, planted: str | None) -> None:
    """In a forked child: crash points, planted bug and (with a journal) journalled pack I/O."""
    seams.arm(crash_at, planted, iofs.JournalFS(journal) if journal is not None else None)


def _writer(db_path: str, seed: int, k0: int, model: Model, ack_fd: int, journal: str | None,
            planted: str | None) -> None:
    _arm(journal, "", planted)
    db = tensordb.open(db_path)
    os.write(ack_fd, _ACK.pack(READY))
    k = k0
    while True:
        op = workload.make_op(seed, k, model)
        workload.apply_db(db, op, model)
        os.write(ack_fd, _ACK.pack(k))  # the commit has returned
        model = workload.apply_model(model, op)
        k += 1


def _writer_child(db_path: str, seed: int, k0: int, model: Model, ack_r: int, ack_w: int, journal: str | None,
                  planted: str | None) -> None:
    os.close(ack_r)
    _writer(db_path, seed, k0, model, ack_w, journal, planted)


def _read_records(fd: int, n: int, timeout: float = 60.0) -> bytes:
    """Read ``n`` records (fewer if the writer dies or the timeout passes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n * _ACK.size and time.monotonic() < deadline:
        if select.select([fd], [], [], 1.0)[0]:
            chunk = os.read(fd, n * _ACK.size - len(data))
            if not chunk:
                break
            data += chunk
    return data


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@dataclass
class RunResult:
    """What a run of random crashes found."""

    seed: int
    trials: int = 0
    transactions: int = 0
    in_flight_committed: int = 0
    losses_applied: int = 0
    violations: list[str] = field(default_factory=list)
    first_violation: int | None = None
    reads: int = 0
    reader_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"seed {self.seed}: {self.trials} kills, {self.transactions} acknowledged transactions, "
                f"{self.in_flight_committed} in-flight ones found committed, {self.losses_applied} kills with "
                f"unsynced pack bytes lost, {self.reads} reader loads, {len(self.reader_errors)} reader errors, "
                f"{len(self.violations)} violations, {self.seconds:.1f} s")


def run_random_crashes(workdir: str, seed: int, trials: int, *, lose: Callable[[int], bool] = lambda i: i % 2 == 1,
                       planted: str | None = None, stop_at_first: bool = False, max_delay: float = 0.05,
                       base_ops: int = 8, reader: bool = True) -> RunResult:
    """Kill ``trials`` forked writers at random moments, verifying the database after each kill.

    ``lose(i)``: whether trial ``i`` also loses every pack change not yet
    durable. ``planted``: a planted bug for the writers (``seams.PLANTED_BUGS``).
    """
    started = time.monotonic()
    result = RunResult(seed)
    rng = random.Random(seed)
    db_path = os.path.join(workdir, "crash.tdb")
    model = workload.build_base(db_path, seed, base_ops)
    k = base_ops
    live_reader = start_reader(db_path, seed) if reader else None
    try:
        for trial in range(trials):
            result.trials += 1
            journal = os.path.join(workdir, f"journal-{trial}.jsonl")
            err_path = os.path.join(workdir, "writer-error.txt")
            lose_this = lose(trial)
            ack_r, ack_w = os.pipe()

            child = functools.partial(_writer_child, db_path, seed, k, model, ack_r, ack_w,
                                      journal if lose_this else None, planted)
            pid = fork(child, err_path)
            os.close(ack_w)
            # The kill moment: a random number of acknowledgements (progress, whatever the
            # load), then a random delay; one kill in ten while the writer opens the database.
            early = rng.random() < 0.1
            records = b"" if early else _read_records(ack_r, 1 + rng.randint(0, 3))
            time.sleep(rng.uniform(0, 0.01 if early else max_delay))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            records += _read_all(ack_r)
            os.close(ack_r)
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                detail = open(err_path).read() if os.path.exists(err_path) else f"wait status {status}"
                result.violations.append(f"trial {trial}: the writer failed before the kill:\n{detail}")
                break
            acks = [value for (value,) in _ACK.iter_unpack(records) if value != READY]
            if acks != list(range(k, k + len(acks))):
                result.violations.append(f"trial {trial}: acknowledgements out of order: {acks}")
                break
            model = workload.replay_model(seed, model, range(k, k + len(acks)))
            k += len(acks)
            result.transactions += len(acks)
            in_flight = workload.make_op(seed, k, model)
            after = workload.apply_model(model, in_flight)
            if lose_this:
                result.losses_applied += 1
                iofs.lose_unsynced(journal)
            if os.path.exists(journal):
                os.remove(journal)
            verdict = workload.verify(db_path, [model, after])
            if not verdict.ok:
                result.violations.append(
                    f"seed {seed}, trial {trial} (killed {'while opening' if early else 'mid-run'}, "
                    f"{len(acks)} transactions acknowledged, in flight: {in_flight}, "
                    f"unsynced pack bytes lost: {lose_this}): " + "; ".join(verdict.problems))
                if result.first_violation is None:
                    result.first_violation = trial
                if stop_at_first:
                    break
                if verdict.matched is None:
                    break  # the model no longer describes the database
            if verdict.matched == 1:  # the in-flight transaction committed before its acknowledgement
                result.in_flight_committed += 1
                model = after
                k += 1
    finally:
        if live_reader is not None:
            result.reads, result.reader_errors = live_reader.stop()
        result.seconds = time.monotonic() - started
    return result


def run_one(db_path: str, body: Callable[[Any], None], *, crash_at: str = "", planted: str | None = None,
            journal: str | None = None, err_path: str | None = None,
            before_open: Callable[[], None] | None = None) -> tuple[bool, str]:
    """Run ``body(db)`` in a forked writer; returns (killed by SIGKILL, error text if it failed otherwise).

    ``crash_at`` arms crash points (``seams.arm``), ``planted`` plants a bug,
    ``journal`` journals the pack I/O (``iofs.JournalFS``).
    """
    def child() -> None:
        _arm(journal, crash_at, planted)
        if before_open is not None:
            before_open()
        db = tensordb.open(db_path)
        body(db)
        db.close()

    pid = fork(child, err_path)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    error = ""
    if not killed and os.WEXITSTATUS(status) != 0:
        error = open(err_path).read() if err_path and os.path.exists(err_path) else f"wait status {status}"
    return killed, error
