"""Where a listing stands, as the opaque string the job layer checkpoints and hands back."""

import json
from dataclasses import dataclass
from typing import Any, Self

from tasks.providers.errors import CursorReset


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stands; encoded to an opaque string the job layer stores as is.

    ``kind`` is provider-specific (Drive: ``files`` while listing, ``changes`` after);
    ``reset`` survives a checkpoint so a resumed relisting is still flagged as one.
    """

    slug: str
    kind: str
    token: str
    reset: bool = False
    start: str | None = None

    def encode(self) -> str:
        """The opaque string form."""
        data: dict[str, Any] = {"v": 1, "p": self.slug, "k": self.kind, "t": self.token}
        if self.reset:
            data["r"] = 1
        if self.start is not None:
            data["s"] = self.start
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str, slug: str) -> Self:
        """Parse ``text``; a cursor that is not ours is as void as one the provider rejects."""
        try:
            data = json.loads(text)
            if data.get("v") != 1 or data.get("p") != slug:
                raise CursorReset(f"cursor is not a {slug} cursor")
            return cls(
                slug=slug,
                kind=str(data["k"]),
                token=str(data["t"]),
                reset=bool(data.get("r")),
                start=data.get("s"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CursorReset("unreadable cursor") from exc
