"""Concurrency and crash safety of the history store on a real SQLite file and a real PostgreSQL.

These tests start threads and subprocesses, so each takes several seconds.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fedcore.store import HistoryStore
from tests.test_store_support import image_sha, make_result, raw_rows, table_counts
from tests.test_store_support import database_url, postgres_url  # noqa: F401  (pytest fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PROJECT_DIR = Path(__file__).resolve().parents[1]
WRITER_THREADS = 10
CAPTURES_PER_WRITER = 50
FACES_PER_CAPTURE = 2
KILL_ROUNDS = 5
FACES_PER_KILLED_CAPTURE = 60
CHILD_START_TIMEOUT_S = 120

# Saves captures in a loop and prints the index of each one after it commits,
# until the parent kills the process.
SAVE_LOOP_SCRIPT = """
import sys
from fedcore.store import HistoryStore
from tests.test_store_support import image_sha, make_result

url, round_number, faces = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = HistoryStore(url)
result = make_result(face_count=faces)
print("ready", flush=True)
index = 0
while True:
    store.save_capture("P-1", result, image_sha256=image_sha(f"{round_number}-{index}"), source="cli")
    print(index, flush=True)
    index += 1
"""

# Opens the store (running migrations) and adds one person, to race other starters.
START_SCRIPT = """
import sys
from fedcore.store import HistoryStore

with HistoryStore(sys.argv[1]) as store:
    store.create_person(sys.argv[2])
"""


def child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), environment.get("PYTHONPATH")]))
    return environment


def test_concurrent_writers_and_reader(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = HistoryStore(database_url)
    store.create_person("P-1")
    errors: list[BaseException] = []
    snapshot_sizes: list[int] = []
    partial_captures: list[int] = []
    writers_done = threading.Event()
    start = threading.Barrier(WRITER_THREADS + 1)

    def write(writer: int) -> None:
        try:
            start.wait()
            for index in range(CAPTURES_PER_WRITER):
                store.save_capture(
                    "P-1",
                    make_result(face_count=FACES_PER_CAPTURE),
                    image_sha256=image_sha(f"{writer}-{index}"),
                    source="upload",
                )
        except BaseException as error:  # noqa: BLE001 - every failure must reach the assertions
            errors.append(error)

    def read() -> None:
        try:
            start.wait()
            while not writers_done.is_set():
                history = store.history("P-1")
                snapshot_sizes.append(len(history))
                faces_per_capture = history.groupby("capture_id").size()
                partial_captures.extend(faces_per_capture[faces_per_capture != FACES_PER_CAPTURE].index)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITER_THREADS)]
    reader = threading.Thread(target=read)
    with caplog.at_level(logging.WARNING, logger="fedcore.store"):
        for thread in (*threads, reader):
            thread.start()
        for thread in threads:
            thread.join()
        writers_done.set()
        reader.join()
    final = store.history("P-1")
    store.close()

    assert errors == []
    assert [record.getMessage() for record in caplog.records if "locked" in record.getMessage()] == []
    assert final["capture_id"].nunique() == WRITER_THREADS * CAPTURES_PER_WRITER
    assert len(final) == WRITER_THREADS * CAPTURES_PER_WRITER * FACES_PER_CAPTURE
    assert table_counts(database_url)["capture"] == WRITER_THREADS * CAPTURES_PER_WRITER
    assert len(snapshot_sizes) >= 2
    assert snapshot_sizes == sorted(snapshot_sizes)
    assert partial_captures == []


def test_concurrent_same_capture_saved_once(database_url: str) -> None:
    store = HistoryStore(database_url)
    store.create_person("P-1")
    result = make_result(face_count=3)
    start = threading.Barrier(WRITER_THREADS)
    summaries = []
    errors: list[BaseException] = []

    def save() -> None:
        try:
            start.wait()
            summaries.append(store.save_capture("P-1", result, image_sha256=image_sha("same"), source="camera"))
        except BaseException as error:  # noqa: BLE001 - every failure must reach the assertions
            errors.append(error)

    threads = [threading.Thread(target=save) for _ in range(WRITER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()

    assert errors == []
    assert len(summaries) == WRITER_THREADS
    assert sum(summary.capture_created for summary in summaries) == 1
    assert len({summary.capture_id for summary in summaries}) == 1
    assert sorted(face for summary in summaries for face in summary.faces_added) == [1, 2, 3]
    counts = table_counts(database_url)
    assert counts["capture"] == 1
    assert counts["face_observation"] == 3


def wait_for_line(process: subprocess.Popen[str], expected: str) -> None:
    deadline = time.monotonic() + CHILD_START_TIMEOUT_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == expected:
            return
        if line == "" and process.poll() is not None:
            pytest.fail(f"save loop exited with {process.returncode} before printing {expected!r}")
    pytest.fail(f"save loop printed no {expected!r} within {CHILD_START_TIMEOUT_S} s")


def test_killed_save_leaves_whole_captures(database_url: str, tmp_path: Path) -> None:
    with HistoryStore(database_url) as store:
        store.create_person("P-1")
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP_SCRIPT, encoding="utf-8")
    randomness = random.Random(20240501)
    confirmed_total = 0

    for round_number in range(KILL_ROUNDS):
        process = subprocess.Popen(
            [sys.executable, str(script), database_url, str(round_number), str(FACES_PER_KILLED_CAPTURE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_environment(),
            cwd=tmp_path,
        )
        try:
            wait_for_line(process, "ready")
            time.sleep(randomness.uniform(0.05, 0.8))
        finally:
            os.kill(process.pid, signal.SIGKILL)
            remaining, _ = process.communicate(timeout=60)
        confirmed_total += len(remaining.split())

        # Every capture must hold all of its faces, and every confirmed save must be there.
        faces_per_capture = raw_rows(
            database_url,
            "SELECT capture.id, count(face_observation.id) FROM capture "
            "LEFT JOIN face_observation ON face_observation.capture_id = capture.id GROUP BY capture.id",
        )
        assert process.returncode == -signal.SIGKILL
        assert [count for _, count in faces_per_capture if count != FACES_PER_KILLED_CAPTURE] == []
        assert confirmed_total <= len(faces_per_capture) <= confirmed_total + round_number + 1

    assert confirmed_total > 0
    with HistoryStore(database_url) as store:
        summary = store.save_capture("P-1", make_result(face_count=1), image_sha256=image_sha("after"), source="cli")
        assert summary.capture_created is True
    if database_url.startswith("sqlite"):
        assert raw_rows(database_url, "PRAGMA integrity_check") == [("ok",)]


def test_simultaneous_starts_migrate_once(database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "start.py"
    script.write_text(START_SCRIPT, encoding="utf-8")
    codes = [f"P-{number}" for number in range(4)]

    processes = [
        subprocess.Popen(
            [sys.executable, str(script), database_url, code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_environment(),
            cwd=tmp_path,
        )
        for code in codes
    ]
    outcomes = [process.communicate(timeout=CHILD_START_TIMEOUT_S) for process in processes]

    assert [process.returncode for process in processes] == [0] * len(codes), [err for _, err in outcomes]
    with HistoryStore(database_url) as store:
        assert sorted(person.code for person in store.list_people()) == codes
    assert len(raw_rows(database_url, "SELECT version_num FROM alembic_version")) == 1
