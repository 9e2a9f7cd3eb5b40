"""What notices are about, as far as the dispatcher needs to know.

The payment domain sits above this app and registers, at start-up, how to read
a subject's current state and which states deserve a correction when an
earlier notice said otherwise. The dispatcher never imports the domain.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SubjectType:
    name: str
    read_state: Callable[[int], str | None]
    # A notice contradicting one of these, once delivered, is followed by a correction.
    confirmed_states: frozenset[str]
    # Template parameters describing the subject as it is now (for corrections).
    describe: Callable[[int], Mapping[str, Any]]
    # Optional: many subjects' states in one query (the dispatcher checks a batch
    # at a time); without it, ``read_state`` is asked once per subject.
    read_states: Callable[[Collection[int]], Mapping[int, str | None]] | None = None


_types: dict[str, SubjectType] = {}


def register_subject_type(subject: SubjectType) -> None:
    _types[subject.name] = subject


def subject_type(name: str) -> SubjectType | None:
    return _types.get(name)


def current_states(subject: SubjectType, ids: Collection[int]) -> dict[int, str | None]:
    """The current state of each subject in ``ids`` (None for one that no longer exists)."""
    if subject.read_states is None:
        return {pk: subject.read_state(pk) for pk in ids}
    found = subject.read_states(ids)
    return {pk: found.get(pk) for pk in ids}
