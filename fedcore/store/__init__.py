"""Per-person history of facial expression estimates, stored in SQLite or PostgreSQL.

``HistoryStore`` is the whole interface; the command line in
``fedcore.store.cli`` and the dashboard use nothing else. The command
``python -m fedcore analyze --person CODE --save`` stores its result through
``HistoryStore.save_capture``.
"""

from fedcore.store.api import HistoryStore
from fedcore.store.records import AuditEvent, DeleteSummary, Person, SaveSummary

__all__ = ["AuditEvent", "DeleteSummary", "HistoryStore", "Person", "SaveSummary"]
