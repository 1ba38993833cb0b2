"""People page: list, create, rename, export and delete the tracked people."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from fedcore.dashboard import (
    default_timezone,
    export_button,
    format_times,
    person_label,
    plural,
    store_and_people_ui,
)
from fedcore.errors import FedError
from fedcore.store import HistoryStore, Person

logger = logging.getLogger(__name__)

MESSAGES_KEY = "people_messages"


def show_messages() -> None:
    for kind, text in st.session_state.pop(MESSAGES_KEY, []):
        getattr(st, kind)(text)


def report(kind: str, text: str) -> None:
    """Queue a message for the next rerun, because callbacks run before the page is drawn."""
    st.session_state.setdefault(MESSAGES_KEY, []).append((kind, text))


def people_table_ui(people: list[Person]) -> None:
    if not people:
        st.info("No people yet. Create one below, or save a result on the Analyze page.")
        return
    created = pd.Series([person.created_at for person in people])
    st.dataframe(
        pd.DataFrame(
            {
                "code": [person.code for person in people],
                "display name": [person.display_name or "" for person in people],
                "created": format_times(created, default_timezone()).to_numpy(),
            }
        ),
        hide_index=True,
    )


def on_create(store: HistoryStore) -> None:
    code = st.session_state.get("people_new_code", "").strip()
    name = st.session_state.get("people_new_name", "").strip() or None
    if not code:
        report("error", "Enter a code for the new person, such as P-0042.")
        return
    try:
        store.create_person(code, name)
    except FedError as error:
        logger.warning("creating person %s failed: %s", code, error)
        report("error", f"The person was not created: {error}")
        return
    st.session_state["people_new_code"] = ""
    st.session_state["people_new_name"] = ""
    report("success", f"Created {code}.")


def create_ui(store: HistoryStore) -> None:
    with st.form("people_create", clear_on_submit=False, border=True):
        st.subheader("Create a person")
        left, right = st.columns(2)
        left.text_input("Code", key="people_new_code", help="A pseudonymous code such as P-0042. Avoid real names.")
        right.text_input("Display name (optional)", key="people_new_name")
        st.form_submit_button("Create", on_click=on_create, args=(store,))


def on_rename(store: HistoryStore, code: str) -> None:
    name = st.session_state.get(f"people_rename_name-{code}", "").strip() or None
    try:
        store.rename_person(code, name)
    except FedError as error:
        logger.warning("renaming person %s failed: %s", code, error)
        report("error", f"{code} was not renamed: {error}")
        return
    report("success", f"{code} is now shown as {name!r}." if name else f"{code} now has no display name.")


def on_delete(store: HistoryStore, code: str) -> None:
    typed = st.session_state.get(f"people_delete_confirm-{code}", "").strip()
    if typed != code:
        report("error", f"Type the code {code} exactly to confirm deleting it; nothing was deleted.")
        return
    try:
        summary = store.delete_person(code)
    except FedError as error:
        logger.warning("deleting person %s failed: %s", code, error)
        report("error", f"{code} was not deleted: {error}")
        return
    report(
        "success",
        f"Deleted {code} and all their data: {plural(summary.captures, 'capture')}, "
        f"{plural(summary.observations, 'face estimate')} and {plural(summary.thumbnails, 'thumbnail')}.",
    )


def manage_ui(store: HistoryStore, people: list[Person]) -> None:
    by_code = {person.code: person for person in people}
    code = st.selectbox(
        "Person", list(by_code), format_func=lambda value: person_label(by_code[value]), key="people_selected"
    )
    if code is None:
        return
    person = by_code[code]

    rename_tab, export_tab, delete_tab = st.tabs(["Rename", "Export", "Delete"])
    with rename_tab:
        st.text_input("New display name", value=person.display_name or "", key=f"people_rename_name-{code}")
        st.button("Rename", on_click=on_rename, args=(store, code), key="people_rename")
    with export_tab:
        export_ui(store, code)
    with delete_tab:
        st.warning(
            f"Deleting {code} removes the person and every saved capture and estimate. This cannot be undone. "
            "Export the data first if it must be kept."
        )
        st.text_input(f"Type {code} to confirm", key=f"people_delete_confirm-{code}")
        st.button("Delete person and all data", type="primary", on_click=on_delete, args=(store, code), key="people_delete")


def export_ui(store: HistoryStore, code: str) -> None:
    st.caption("Exports contain the person's code, display name and every estimate, with times in UTC.")
    left, right = st.columns(2)
    with left:
        export_button(store, code, "csv", label="Download CSV", key=f"people_csv-{code}")
    with right:
        export_button(store, code, "json", label="Download JSON", key=f"people_json-{code}")


def main() -> None:
    st.title("People")
    st.write(
        "Each tracked person is known by a pseudonymous code, with an optional display name. "
        "Expression histories are sensitive health data: export and delete them only as your policy allows."
    )
    opened = store_and_people_ui()
    if opened is None:
        return
    store, people = opened

    show_messages()
    people_table_ui(people)
    create_ui(store)
    if people:
        st.subheader("Manage a person")
        manage_ui(store, people)


main()
