"""Local files: reading small ones that torv does not trust to be well-formed,
and refusing private ones that other users can reach."""

from __future__ import annotations

import stat
from pathlib import Path

from storage.errors import LocalError, UnsafePermissions

__all__ = ["check_private_mode", "read_small_text"]


def check_private_mode(path: Path, mode: int, what: str, *, fix: str, risk: str = "") -> None:
    """Raise :class:`UnsafePermissions` if ``mode`` (an ``st_mode``) gives
    anyone but the owner any access to ``path``.

    Group bits count as other users: on a shared machine a group often holds
    them. ``what`` names the file in the message ("the key file"), ``fix`` is
    the mode that ``chmod`` should set ("600"), ``risk`` (optional) is a
    sentence on what the exposure may already have cost.
    """
    bits = stat.S_IMODE(mode)
    if bits & 0o077:
        raise UnsafePermissions(
            f"{what} {path} is open to other users (mode {bits:04o}); torv will not use it"
            f" until you run: chmod {fix} {path}" + (f". {risk}" if risk else "")
        )


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
