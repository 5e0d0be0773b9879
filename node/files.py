"""Reading small local files that torv does not trust to be well-formed."""

from __future__ import annotations

from pathlib import Path

from storage.errors import LocalError

__all__ = ["read_small_text"]


def read_small_text(path: Path, *, limit: int, what: str, error: type[LocalError]) -> str:
    """The UTF-8 text of ``path``, read only if it has at most ``limit`` bytes.

    ``what`` names the file in messages ("the config file"). Raises ``error``
    if the file cannot be read, is larger, or is not UTF-8; a missing file
    raises :class:`FileNotFoundError` so that the caller can choose a default.
    """
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
