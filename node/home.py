"""The data directory and its configuration file.

Where the data lives: ``--data-dir``, else ``$TORV_HOME``, else
``$XDG_DATA_HOME/torv``, else ``~/.local/share/torv``. It holds:

- ``secret.key``: the identity (mode 0600);
- ``store.db``: the SQLite store (with its ``-wal`` and ``-shm`` files);
- ``config.toml``: settings (see :class:`Config`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from storage.errors import ConfigError, InvalidArgument

from .files import read_small_text
from .identity import FEED_ID_PREFIX, feed_id_from_text, feed_id_to_text

__all__ = ["CONFIG_TEMPLATE", "Config", "Home", "default_data_dir"]

_CONFIG_MAX: Final = 64 * 1024
_MAX_PETNAME: Final = 64

CONFIG_TEMPLATE: Final = """\
# torv configuration; README.md ("Configuration") describes every setting.

[timeline]
# How many items `torv timeline` shows when --limit is not given.
limit = 50

[petnames]
# Your own names for feeds. They are shown instead of the names people give
# themselves, which anybody can copy. Example:
# "torv1..." = "alice"
"""


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    """The data directory when ``--data-dir`` is not given."""
    env = os.environ if environ is None else environ
    if env.get("TORV_HOME"):
        return Path(env["TORV_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "torv"


@dataclass(frozen=True, slots=True)
class Config:
    """Settings from ``config.toml``; every field has a default."""

    timeline_limit: int = 50
    petnames: dict[bytes, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, source: str = "config.toml") -> Config:
        """Parse and check the file's text; raise :class:`ConfigError` naming the problem."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        _only(data, {"timeline", "petnames"}, source, "")
        timeline = _table(data, "timeline", source)
        _only(timeline, {"limit"}, source, "timeline.")
        limit = timeline.get("limit", 50)
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise ConfigError(f"{source}: timeline.limit must be a whole number from 1 to 1000")
        petnames: dict[bytes, str] = {}
        for key, name in _table(data, "petnames", source).items():
            try:
                feed = feed_id_from_text(key)
            except InvalidArgument as exc:
                raise ConfigError(f"{source}: petnames: {exc}") from None
            if not isinstance(name, str) or not 1 <= len(name) <= _MAX_PETNAME:
                raise ConfigError(f"{source}: petname of {key} must be 1 to 64 characters")
            if not name.isprintable():
                raise ConfigError(f"{source}: petname {name!r} must be printable text")
            if name.startswith(FEED_ID_PREFIX):
                raise ConfigError(
                    f"{source}: petname {name!r} must not start with {FEED_ID_PREFIX}"
                    " (it would look like a feed id)"
                )
            petnames[feed] = name
        if len(set(petnames.values())) != len(petnames):
            raise ConfigError(f"{source}: two feeds have the same petname")
        return cls(timeline_limit=limit, petnames=petnames)

    def petname_lookup(self, name: str) -> bytes | None:
        """The feed with petname ``name``, if any."""
        for feed, petname in self.petnames.items():
            if petname == name:
                return feed
        return None


def _only(table: dict[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown setting {prefix}{key}")


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    return value


@dataclass(frozen=True, slots=True)
class Home:
    """A data directory: paths of its files, and its config."""

    path: Path

    @property
    def key_path(self) -> Path:
        return self.path / "secret.key"

    @property
    def store_path(self) -> Path:
        return self.path / "store.db"

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    def create(self) -> None:
        """Create the directory (mode 0700) and a commented config file if missing."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text(CONFIG_TEMPLATE, encoding="utf-8")

    def load_config(self) -> Config:
        """The settings in ``config.toml`` (defaults if there is no file)."""
        try:
            text = read_small_text(
                self.config_path, limit=_CONFIG_MAX, what="the config file", error=ConfigError
            )
        except FileNotFoundError:
            return Config()
        return Config.parse(text, source=str(self.config_path))

    def add_petname(self, feed: bytes, name: str) -> None:
        """Set ``feed``'s petname in ``config.toml`` (replacing an earlier one)
        after checking the result parses; raise :class:`ConfigError` otherwise."""
        self.create()
        text = self.config_path.read_text(encoding="utf-8")
        feed_text = feed_id_to_text(feed)
        # TOML refuses a key given twice, so an earlier petname line goes.
        text = "".join(
            old
            for old in text.splitlines(keepends=True)
            if not old.lstrip().startswith((f'"{feed_text}"', feed_text))
        )
        line = f'"{feed_text}" = {_toml_string(name)}\n'
        header = _PETNAMES_HEADER.search(text)
        if header is None:
            updated = text.rstrip("\n") + "\n\n[petnames]\n" + line
        else:
            updated = text[: header.end()] + "\n" + line + text[header.end() :].lstrip("\r\n")
        Config.parse(updated, source=str(self.config_path))
        # Written beside and renamed over, so a crash leaves the old file or the new.
        temporary = self.config_path.with_name(f".{self.config_path.name}.tmp")
        temporary.write_text(updated, encoding="utf-8")
        os.replace(temporary, self.config_path)


_PETNAMES_HEADER: Final = re.compile(r"^[ \t]*\[petnames\][ \t]*(#[^\r\n]*)?", re.MULTILINE)


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
