"""Command-line commands of the history store, run through a parser built with ``register``."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fedcore.store import HistoryStore
from fedcore.store.cli import parse_cli_datetime, register
from tests.test_store_support import at, image_sha, make_result


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse ``argv`` like ``python -m fedcore`` would and run the chosen handler."""
    parser = argparse.ArgumentParser(prog="fedcore")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.sqlite3'}"


@pytest.fixture
def seeded_url(db_url: str) -> str:
    """A database with person P-1 and captures at 08:00, 09:00 and 10:00 UTC on 1 May 2024."""
    with HistoryStore(db_url) as store:
        store.create_person("P-1", "Ada")
        for hour in (8, 9, 10):
            store.save_capture(
                "P-1", make_result(face_count=1), image_sha256=image_sha(hour), source="cli", captured_at=at(hour)
            )
    return db_url


def test_people_add_then_list_table(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    added = run_cli(["people", "add", "P-0042", "--name", "Zoë Ångström", "--db", db_url], capsys)
    listed = run_cli(["people", "list", "--db", db_url], capsys)

    assert added == (0, "added P-0042 (Zoë Ångström)\n", "")
    assert listed[0] == 0
    lines = listed[1].splitlines()
    assert lines[0].split() == ["CODE", "DISPLAY", "NAME", "CREATED"]
    assert lines[2].startswith("P-0042  Zoë Ångström  ")
    assert lines[2].endswith(" UTC")


def test_people_list_json(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["people", "add", "B-2", "--db", db_url], capsys)
    run_cli(["people", "add", "A-1", "--name", "Ada", "--db", db_url], capsys)

    code, out, _ = run_cli(["people", "list", "--json", "--db", db_url], capsys)
    people = json.loads(out)

    assert code == 0
    assert [(person["code"], person["display_name"]) for person in people] == [("A-1", "Ada"), ("B-2", None)]
    assert datetime.fromisoformat(people[0]["created_at"]).utcoffset().total_seconds() == 0


def test_people_list_empty_hint(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["people", "list", "--db", db_url], capsys)

    assert code == 0
    assert "python -m fedcore people add CODE" in out


def test_people_add_invalid_code_exit_one(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["people", "add", "P 1", "--db", db_url], capsys)

    assert code == 1
    assert out == ""
    assert err.startswith("error: invalid person code 'P 1'")


def test_people_add_duplicate_exit_one(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["people", "add", "P-1", "--db", db_url], capsys)

    code, _, err = run_cli(["people", "add", "P-1", "--db", db_url], capsys)

    assert code == 1
    assert "person 'P-1' already exists" in err


def test_people_rename_sets_and_clears(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    renamed = run_cli(["people", "rename", "P-1", "Grace", "--db", seeded_url], capsys)
    cleared = run_cli(["people", "rename", "P-1", "", "--db", seeded_url], capsys)

    assert renamed == (0, "renamed P-1 to Grace\n", "")
    assert cleared == (0, "cleared the display name of P-1\n", "")


def test_people_delete_without_yes_refused(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["people", "delete", "P-1", "--db", seeded_url], capsys)

    assert code == 2
    assert out == ""
    assert "run the command again with --yes" in err
    with HistoryStore(seeded_url) as store:
        assert store.get_person("P-1") is not None


def test_people_delete_with_yes(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["people", "delete", "P-1", "--yes", "--db", seeded_url], capsys)

    assert code == 0
    assert out == "deleted P-1: 3 capture(s), 3 observation(s), 0 thumbnail(s)\n"
    with HistoryStore(seeded_url) as store:
        assert store.get_person("P-1") is None


def test_history_table_in_range(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        ["history", "P-1", "--since", "2024-05-01T09:00:00", "--until", "2024-05-01T10:00:00Z", "--db", seeded_url],
        capsys,
    )

    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["CAPTURED", "CAPTURE", "FACE", "EXPRESSION", "PROBABILITY", "UNCERTAIN", "SOURCE"]
    assert lines[2].split() == ["2024-05-01", "09:00:00", "UTC", "2", "1", "happy", "0.72", "cli"]
    assert len([line for line in lines if line.startswith("2024-")]) == 1
    assert "1 observation(s)." in out
    assert "not a diagnosis" in out


def test_history_csv_whole_days(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        ["history", "P-1", "--since", "2024-05-01", "--until", "2024-05-01", "--csv", "--db", seeded_url], capsys
    )
    rows = list(csv.DictReader(io.StringIO(out)))

    assert code == 0
    assert [row["captured_at"] for row in rows] == [
        "2024-05-01T08:00:00+00:00", "2024-05-01T09:00:00+00:00", "2024-05-01T10:00:00+00:00",
    ]  # fmt: skip
    with HistoryStore(seeded_url) as store:
        assert store.audit_events(code="P-1", limit=1)[0].action == "history_exported"


def test_history_empty_range_message(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["history", "P-1", "--since", "2025-01-01", "--db", seeded_url], capsys)

    assert code == 0
    assert out == "no observations of P-1 in the requested time range\n"


def test_history_unknown_person_exit_one(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["history", "P-9", "--db", db_url], capsys)

    assert code == 1
    assert err == "error: person 'P-9' not found; create it with `python -m fedcore people add P-9`\n"


def test_history_invalid_date_usage_error(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(["history", "P-1", "--since", "01/05/2024", "--db", db_url], capsys)

    assert exited.value.code == 2
    assert "invalid date '01/05/2024'" in capsys.readouterr().err


def test_db_upgrade_reports_revision(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = run_cli(["db", "upgrade", "--db", db_url], capsys)
    second = run_cli(["db", "upgrade", "--db", db_url], capsys)

    assert first[0] == 0
    assert first[1].startswith("database sqlite:///")
    assert first[1].endswith("is at schema revision 0001 (latest)\n")
    assert second == first


def test_db_environment_url_used(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FED_DATABASE_URL", db_url)

    run_cli(["people", "add", "P-5"], capsys)

    with HistoryStore(db_url) as store:
        assert store.get_person("P-5") is not None


def test_db_unreachable_exit_one(capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = "postgresql://fed:secret@127.0.0.1:9/fed?connect_timeout=5"

    code, _, err = run_cli(["people", "list", "--db", unreachable], capsys)


    assert code == 1
    assert err.startswith("error: cannot open or upgrade the database postgresql+psycopg://fed:***@127.0.0.1:9/fed")
    assert "secret" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T14:30:00", datetime(2024, 5, 1, 14, 30, tzinfo=timezone.utc)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_cli_datetime_values(text: str, expected: datetime) -> None:
    parsed = parse_cli_datetime(text)

    assert parsed == expected
    assert parsed.utcoffset() is not None
