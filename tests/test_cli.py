"""`python -m fedcore analyze`: JSON Lines, table, annotation, folders, bad files and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fedcore.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from fedcore.constants import CLASSES
from tests.helpers import PROJECT_DIR, astronaut, astronaut_face, jpeg_bytes

JSON_KEYS = {"path", "width", "height", "faces", "notes", "error"}
FACE_KEYS = {"number", "box", "confidence", "keypoints", "probabilities", "label", "uncertain"}


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    astronaut().save(folder / "astronaut.png")
    # A JPEG whose name says PNG: the content decides.
    (folder / "nested" / "disguised.png").write_bytes(jpeg_bytes(astronaut()))
    Image.new("RGB", (120, 80), "gray").save(folder / "blank.jpg")
    (folder / "notes.txt").write_text("not an image and not picked by the folder walk")
    return folder


def read_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_analyze_json_lines_schema(photo_folder, capsys):
    code = main(["analyze", str(photo_folder), "--json"])
    records = read_json_lines(capsys.readouterr().out)
    assert code == EXIT_OK
    assert [Path(r["path"]).name for r in records] == ["astronaut.png", "blank.jpg", "disguised.png"]
    for record in records:
        assert set(record) == JSON_KEYS
        assert record["error"] is None
    astronaut_record = records[0]
    assert (astronaut_record["width"], astronaut_record["height"]) == (512, 512)
    assert len(astronaut_record["faces"]) == 1
    face = astronaut_record["faces"][0]
    assert set(face) == FACE_KEYS
    assert list(face["probabilities"]) == list(CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(face["keypoints"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert records[1]["faces"] == []
    assert len(records[2]["faces"]) == 1


def test_analyze_bad_file_does_not_stop_batch(photo_folder, capsys):
    (photo_folder / "broken.jpg").write_text("plain text")
    (photo_folder / "empty.png").write_bytes(b"")
    code = main(["analyze", str(photo_folder), str(photo_folder / "missing.jpg"), "--json"])
    records = {Path(r["path"]).name: r for r in read_json_lines(capsys.readouterr().out)}
    assert code == EXIT_FAILED
    assert records["broken.jpg"]["error"]["kind"] == "unsupported"
    assert records["empty.png"]["error"]["kind"] == "empty"
    assert records["missing.jpg"]["error"]["kind"] == "not_found"
    assert len(records["astronaut.png"]["faces"]) == 1


def test_analyze_table_output(photo_folder, capsys):
    code = main(["analyze", str(photo_folder / "astronaut.png")])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "astronaut.png: 512x512, 1 face(s)" in out
    assert "#1" in out


def test_analyze_annotate_writes_copies(photo_folder, tmp_path, capsys):
    target = tmp_path / "annotated"
    code = main(["analyze", str(photo_folder), "--annotate", str(target)])
    capsys.readouterr()
    assert code == EXIT_OK
    written = sorted(p.name for p in target.iterdir())
    assert written == ["astronaut.annotated.jpg", "blank.annotated.jpg", "disguised.annotated.jpg"]
    with Image.open(target / "astronaut.annotated.jpg") as image:
        assert image.size == (512, 512)


def test_analyze_no_detect_whole_image(tmp_path, capsys):
    path = tmp_path / "crop.png"
    crop = astronaut_face(margin=0.05)
    crop.save(path)
    code = main(["analyze", str(path), "--json", "--no-detect"])
    record = read_json_lines(capsys.readouterr().out)[0]
    assert code == EXIT_OK
    assert record["faces"][0]["box"] == [0, 0, crop.width, crop.height]


def test_analyze_max_faces_and_confidence(photo_folder, capsys):
    code = main(["analyze", str(photo_folder / "astronaut.png"), "--json", "--min-confidence", "1.0"])
    record = read_json_lines(capsys.readouterr().out)[0]
    assert code == EXIT_OK
    assert record["faces"] == []


@pytest.mark.parametrize(
    "arguments",
    [
        ["analyze", "x.jpg", "--min-confidence", "2"],
        ["analyze", "x.jpg", "--max-faces", "0"],
        ["analyze"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_two(arguments, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == EXIT_USAGE


def test_save_without_person_exit_two(photo_folder, capsys):
    assert main(["analyze", str(photo_folder), "--save"]) == EXIT_USAGE
    assert "--person" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point_subprocess(photo_folder, tmp_path):
    env = {**os.environ, "FED_DATABASE_URL": f"sqlite:///{tmp_path / 'history.sqlite3'}"}
    completed = subprocess.run(
        [sys.executable, "-m", "fedcore", "analyze", str(photo_folder), "--json"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == EXIT_OK, completed.stderr
    assert len(read_json_lines(completed.stdout)) == 3
    # The progress bar goes to stderr, so stdout stays valid JSON Lines.
    assert "analysing" in completed.stderr


def test_analyze_save_to_person_idempotent(photo_folder, tmp_path, capsys, monkeypatch):
    from fedcore.store import HistoryStore

    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    monkeypatch.setenv("FED_DATABASE_URL", url)
    assert main(["people", "add", "P-0042", "--name", "Test person"]) == EXIT_OK
    image = str(photo_folder / "astronaut.png")

    assert main(["analyze", image, "--person", "P-0042", "--save"]) == EXIT_OK
    first = capsys.readouterr().out
    assert "Saved face 1 to capture" in first
    assert main(["analyze", image, "--person", "P-0042", "--save"]) == EXIT_OK
    second = capsys.readouterr().out
    assert "nothing added" in second

    history = HistoryStore(url).history("P-0042")
    assert len(history) == 1
    assert history.loc[0, "source"] == "cli"
    assert history.loc[0, "face_number"] == 1


def test_analyze_save_unknown_person_fails(photo_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FED_DATABASE_URL", f"sqlite:///{tmp_path / 'history.sqlite3'}")
    code = main(["analyze", str(photo_folder / "astronaut.png"), "--person", "P-404", "--save"])
    assert code == EXIT_FAILED
    assert "people add P-404" in capsys.readouterr().err


def test_save_group_photo_needs_faces(tmp_path, capsys, monkeypatch):
    from fedcore.store import HistoryStore
    from tests.test_pipeline import row_of_faces

    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    monkeypatch.setenv("FED_DATABASE_URL", url)
    group = tmp_path / "group.png"
    row_of_faces(3).save(group)
    assert main(["people", "add", "P-0007"]) == EXIT_OK

    assert main(["analyze", str(group), "--person", "P-0007", "--save"]) == EXIT_FAILED
    assert "pass --faces" in capsys.readouterr().out
    assert len(HistoryStore(url).history("P-0007")) == 0

    assert main(["analyze", str(group), "--person", "P-0007", "--save", "--faces", "2"]) == EXIT_OK
    history = HistoryStore(url).history("P-0007")
    assert history["face_number"].tolist() == [2]

    assert main(["analyze", str(group), "--person", "P-0007", "--save", "--faces", "5"]) == EXIT_FAILED
    assert "do not exist" in capsys.readouterr().out


def test_person_without_save_exit_two(photo_folder, capsys):
    assert main(["analyze", str(photo_folder), "--person", "P-1"]) == EXIT_USAGE
    assert "--save" in capsys.readouterr().err
