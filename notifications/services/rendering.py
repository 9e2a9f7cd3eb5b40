"""Notice texts: the admins' template for a kind and language, else the built-in one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from notifications.models import DeliveryChannel, Notice, NoticeTemplate
from notifications.texts import DEFAULT_TEXTS


class TemplateBook:
    """The admin-edited templates a set of notices needs, read in one query."""

    def __init__(self, templates: dict[tuple[str, str], str]) -> None:
        self._templates = templates

    @classmethod
    def for_notices(
        cls, notices: Iterable[Notice], channel: str = DeliveryChannel.SMS
    ) -> TemplateBook:
        wanted = {(notice.kind, notice.language) for notice in notices}
        if not wanted:
            return cls({})
        rows = NoticeTemplate.objects.filter(
            channel=channel,
            kind__in={kind for kind, _ in wanted},
            language__in={language for _, language in wanted},
        ).values_list("kind", "language", "text")
        return cls({(kind, language): text for kind, language, text in rows})

    def render(self, notice: Notice) -> str:
        text = (
            self._templates.get((notice.kind, notice.language))
            or DEFAULT_TEXTS.get((notice.kind, notice.language))
            or DEFAULT_TEXTS.get((notice.kind, "zh-hans"), "")
        )
        return text.format_map(_Blank(notice.params))


def render(notice: Notice, channel: str = DeliveryChannel.SMS) -> str:
    """The text of one notice as it would be sent now."""
    return TemplateBook.for_notices([notice], channel).render(notice)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""
