"""Command-line commands of the history store: ``people``, ``history`` and ``db``.

``fedcore.cli`` builds the top-level parser and calls ``register``. Every
command gets ``--db URL`` and a handler ``function(args) -> int`` stored as
``args.handler``, which returns 0 on success, 1 on an error it printed to
stderr, and 2 on a usage error. ``python -m fedcore analyze --person CODE
--save`` stores its results through ``HistoryStore.save_capture``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone

from fedcore.errors import StoreError
from fedcore.store.api import HistoryStore
from fedcore.store.engine import DATABASE_URL_ENV, DEFAULT_DATABASE_FILENAME, DATA_DIR_ENV, display_url
from fedcore.store.history import EXPORT_NOTE

Handler = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

DB_HELP = (
    f"database URL, for example sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME "
    f"(default: ${DATABASE_URL_ENV}, else {DEFAULT_DATABASE_FILENAME} in ${DATA_DIR_ENV} or ./data)"
)
DATE_HELP = (
    "a date YYYY-MM-DD or an ISO 8601 date and time; values without a time zone are taken as UTC"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``people``, ``history`` and ``db`` commands to a top-level parser."""
    _register_people(subparsers)
    _register_history(subparsers)
    _register_db(subparsers)


def _add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--db", metavar="URL", default=None, help=DB_HELP)
    parser.set_defaults(handler=handler)
    return parser


def _register_people(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    people = subparsers.add_parser(
        "people", help="add, list, rename or delete people", description="Manage the people whose history is kept."
    )
    commands = people.add_subparsers(dest="people_command", metavar="COMMAND", required=True)

    add = _add_command(commands, "add", run_people_add, "add a person by pseudonymous code")
    add.add_argument("code", metavar="CODE", help="1-32 letters, digits, '-' or '_', for example P-0042")
    add.add_argument("--name", default=None, help="optional display name, at most 100 characters")

    listing = _add_command(commands, "list", run_people_list, "list people with their display names")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    rename = _add_command(commands, "rename", run_people_rename, "set a person's display name")
    rename.add_argument("code", metavar="CODE")
    rename.add_argument("name", metavar="NAME", help="new display name; an empty string clears it")

    remove = _add_command(
        commands, "delete", run_people_delete, "delete a person with every capture, observation and thumbnail"
    )
    remove.add_argument("code", metavar="CODE")
    remove.add_argument("--yes", action="store_true", help="confirm the deletion, which cannot be undone")


def _register_history(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = _add_command(subparsers, "history", run_history, "show a person's expression estimates over time")
    history.add_argument("code", metavar="CODE")
    history.add_argument("--since", type=parse_cli_datetime, default=None, help=f"first time included: {DATE_HELP}")
    history.add_argument(
        "--until", type=parse_cli_until, default=None,
        help=f"end of the range, excluded: {DATE_HELP}; a date alone includes that whole day",
    )  # fmt: skip
    history.add_argument("--csv", action="store_true", help="print CSV (recorded in the audit log as an export)")


def _register_db(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db", help="maintain the history database", description="Maintain the history database.")
    commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    _add_command(commands, "upgrade", run_db_upgrade, "create the database or apply pending schema migrations")


def parse_cli_datetime(text: str) -> datetime:
    """Parse YYYY-MM-DD or an ISO 8601 datetime; a value without a time zone is taken as UTC."""
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time())
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {text!r}: use YYYY-MM-DD or an ISO 8601 date and time such as 2024-05-01T14:30:00+02:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_cli_until(text: str) -> datetime:
    """Parse an end of range; a date alone means up to the end of that day, like the dashboard's end date."""
    parsed = parse_cli_datetime(text)
    return parsed + timedelta(days=1) if len(text) == 10 else parsed


def _open(args: argparse.Namespace) -> HistoryStore:
    return HistoryStore(args.db)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_people_add(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            person = store.create_person(args.code, args.name)
    except StoreError as error:
        return _error(str(error))
    print(f"added {person.code}" + (f" ({person.display_name})" if person.display_name else ""))
    return EXIT_OK


def run_people_list(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            people = store.list_people()
    except StoreError as error:
        return _error(str(error))
    if args.json:
        document = [
            {"code": person.code, "display_name": person.display_name, "created_at": person.created_at.isoformat()}
            for person in people
        ]
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return EXIT_OK
    if not people:
        print("no people yet; add one with `python -m fedcore people add CODE`")
        return EXIT_OK
    rows = [(person.code, person.display_name or "", _utc_text(person.created_at)) for person in people]
    print(_table(("CODE", "DISPLAY NAME", "CREATED"), rows))
    return EXIT_OK


def run_people_rename(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            person = store.rename_person(args.code, args.name)
    except StoreError as error:
        return _error(str(error))
    if person.display_name is None:
        print(f"cleared the display name of {person.code}")
    else:
        print(f"renamed {person.code} to {person.display_name}")
    return EXIT_OK


def run_people_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"error: not deleted: deleting {args.code} removes every capture, observation and thumbnail "
            "and cannot be undone; run the command again with --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        with _open(args) as store:
            summary = store.delete_person(args.code)
    except StoreError as error:
        return _error(str(error))
    print(
        f"deleted {summary.person_code}: {summary.captures} capture(s), {summary.observations} observation(s), "
        f"{summary.thumbnails} thumbnail(s)"
    )
    return EXIT_OK


def run_history(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            if args.csv:
                sys.stdout.write(store.export_csv(args.code, since=args.since, until=args.until))
                return EXIT_OK
            frame = store.history(args.code, since=args.since, until=args.until)
    except StoreError as error:
        return _error(str(error))
    if frame.empty:
        print(f"no observations of {args.code} in the requested time range")
        return EXIT_OK
    rows = [
        (
            _utc_text(row.captured_at),
            str(row.capture_id),
            str(row.face_number),
            row.top_expression,
            f"{row.top_probability:.2f}",
            "yes" if row.uncertain else "",
            row.source,
        )
        for row in frame.itertuples(index=False)
    ]
    print(_table(("CAPTURED", "CAPTURE", "FACE", "EXPRESSION", "PROBABILITY", "UNCERTAIN", "SOURCE"), rows))
    print(f"\n{len(frame)} observation(s). {EXPORT_NOTE}")
    return EXIT_OK


def run_db_upgrade(args: argparse.Namespace) -> int:
    try:
        with _open(args) as store:
            revision = store.revision
            url = display_url(store.url)
    except StoreError as error:
        return _error(str(error))
    print(f"database {url} is at schema revision {revision} (latest)")
    return EXIT_OK
