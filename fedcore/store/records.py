"""Plain result types of the history store, detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Person:
    """A tracked person. ``code`` is pseudonymous; ``display_name`` is optional and local only."""

    code: str
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class SaveSummary:
    """The outcome of one ``HistoryStore.save_capture`` call.

    ``capture_id`` is None when nothing was saved because the image had no
    classified face. Face numbers are those of the ImageResult.
    """

    person_code: str
    image_sha256: str
    capture_id: int | None
    capture_created: bool
    faces_added: tuple[int, ...]
    faces_already_saved: tuple[int, ...]
    faces_skipped_unclassified: tuple[int, ...]
    thumbnails_added: int = 0

    @property
    def changed(self) -> bool:
        return self.capture_created or bool(self.faces_added) or self.thumbnails_added > 0

    @property
    def already_saved(self) -> bool:
        """True when the capture existed with every requested face, so nothing was added."""
        return self.capture_id is not None and not self.changed

    def describe(self) -> str:
        """Return one or two sentences for the dashboard or the command line."""
        if self.capture_id is None:
            text = f"Nothing saved for {self.person_code}: the image has no classified face."
        elif self.already_saved:
            text = (
                f"Capture {self.capture_id} of {self.person_code} was already saved with "
                f"{_faces(self.faces_already_saved)}; nothing added."
            )
        else:
            text = f"Saved {_faces(self.faces_added)} to capture {self.capture_id} of {self.person_code}."
            if self.faces_already_saved:
                text += f" Already saved before: {_faces(self.faces_already_saved)}."
            if self.thumbnails_added:
                text += f" Stored {self.thumbnails_added} face thumbnail(s)."
        if self.faces_skipped_unclassified:
            text += f" Skipped unclassified {_faces(self.faces_skipped_unclassified)}."
        return text


@dataclass(frozen=True)
class DeleteSummary:
    """Row counts removed by ``HistoryStore.delete_person``."""

    person_code: str
    captures: int
    observations: int
    thumbnails: int


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit log. ``counts`` contains row counts, never image data or names."""

    occurred_at: datetime
    action: str
    person_code: str | None
    counts: dict[str, Any] = field(default_factory=dict)


def _faces(numbers: tuple[int, ...]) -> str:
    if not numbers:
        return "no face"
    label = "face" if len(numbers) == 1 else "faces"
    return f"{label} {', '.join(str(number) for number in numbers)}"
