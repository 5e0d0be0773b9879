"""The data directory and its configuration file.

Where the data lives: ``--data-dir``, else ``$TORV_HOME``, else
``$XDG_DATA_HOME/torv``, else ``~/.local/share/torv``. The directory is
private (mode 0700: torv refuses one that other users can reach, see
:meth:`Home.check_private`). It holds:

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

from storage.errors import ConfigError, IdentityError, InvalidArgument

from .files import check_private_mode, read_small_text
from .identity import FEED_ID_PREFIX, feed_id_from_text, feed_id_to_text
from .records import parse_address

__all__ = ["CONFIG_TEMPLATE", "Config", "Home", "default_data_dir", "parse_network_key"]

_CONFIG_MAX: Final = 64 * 1024
_MAX_LIST: Final = 1000
_ALGORITHM_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")
_MAX_PETNAME: Final = 64

CONFIG_TEMPLATE: Final = """\
# torv configuration; README.md ("Configuration") describes every setting.

[timeline]
# How many items `torv timeline` shows when --limit is not given.
limit = 50

[network]
# Where `torv run` listens for peers (TCP) and, on the same port, the DHT (UDP).
# listen = "0.0.0.0:4710"
# The address other nodes should dial, if it is not the listen address: a
# public address behind NAT or a port forward. Left out, a wildcard listen
# address announces the address of the interface that leads to the seeds.
# announce = "203.0.113.7:4710"
# Seed nodes to join through (HOST:PORT, TCP and UDP); known peers are
# remembered, so seeds are only needed the first time.
# bootstrap = ["192.0.2.10:4710"]
# Replicate the follows of your follows too (1: only your follows).
# hops = 1
# Subscribe to the square, the stream of all public posts (seed nodes do).
# square = false

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
    listen: str | None = None
    announce: str | None = None
    bootstrap: tuple[str, ...] = ()
    hops: int = 1
    square: bool = False
    network_key: bytes | None = None
    #: The timeline algorithm (``torv algorithms`` lists them).
    algorithm: str = "latest"
    #: Content warnings folded until opened.
    fold_cw: bool = True
    #: The square shows only people within this many follow hops (``None``: everyone).
    square_hops: int | None = None
    #: Private moderation: never published, never sent to peers.
    mute: frozenset[bytes] = frozenset()
    hide_reposts: frozenset[bytes] = frozenset()
    filter_words: tuple[str, ...] = ()
    filter_tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, *, source: str = "config.toml") -> Config:
        """Parse and check the file's text; raise :class:`ConfigError` naming the problem."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        _only(data, {"timeline", "petnames", "network", "moderation"}, source, "")
        timeline = _table(data, "timeline", source)
        _only(timeline, {"limit", "algorithm", "fold_cw", "square_hops"}, source, "timeline.")
        limit = timeline.get("limit", 50)
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise ConfigError(f"{source}: timeline.limit must be a whole number from 1 to 1000")
        algorithm = timeline.get("algorithm", "latest")
        if not isinstance(algorithm, str) or not _ALGORITHM_NAME.fullmatch(algorithm):
            raise ConfigError(
                f"{source}: timeline.algorithm must be a name of letters, digits, - and _"
            )
        fold_cw = timeline.get("fold_cw", True)
        if type(fold_cw) is not bool:
            raise ConfigError(f"{source}: timeline.fold_cw must be true or false")
        square_hops = timeline.get("square_hops")
        if square_hops is not None and (type(square_hops) is not int or not 1 <= square_hops <= 3):
            raise ConfigError(f"{source}: timeline.square_hops must be a whole number from 1 to 3")
        moderation = _table(data, "moderation", source)
        _only(moderation, {"mute", "hide_reposts", "words", "tags"}, source, "moderation.")
        mute = _feeds(moderation, "mute", source)
        hide_reposts = _feeds(moderation, "hide_reposts", source)
        words = _texts(moderation, "words", source)
        tags = _texts(moderation, "tags", source)
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
        network = _table(data, "network", source)
        _only(
            network,
            {"listen", "announce", "bootstrap", "hops", "square", "network_key"},
            source,
            "network.",
        )
        listen = network.get("listen")
        announce = network.get("announce")
        bootstrap = network.get("bootstrap", [])
        hops = network.get("hops", 1)
        square = network.get("square", False)
        network_key = network.get("network_key")
        try:
            if listen is not None:
                if not isinstance(listen, str):
                    raise InvalidArgument("network.listen must be a string")
                parse_address(listen, any_port=True)
            if announce is not None:
                if not isinstance(announce, str):
                    raise InvalidArgument("network.announce must be a string")
                parse_address(announce)
            if not isinstance(bootstrap, list) or len(bootstrap) > 64:
                raise InvalidArgument("network.bootstrap must be a list of HOST:PORT")
            for address in bootstrap:
                parse_address(address if isinstance(address, str) else "")
            if type(hops) is not int or not 0 <= hops <= 3:
                raise InvalidArgument("network.hops must be a whole number from 0 to 3")
            if type(square) is not bool:
                raise InvalidArgument("network.square must be true or false")
            if network_key is not None:
                network_key = parse_network_key(network_key)
        except InvalidArgument as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return cls(
            timeline_limit=limit,
            petnames=petnames,
            listen=listen,
            announce=announce,
            bootstrap=tuple(bootstrap),
            hops=hops,
            square=square,
            network_key=network_key,
            algorithm=algorithm,
            fold_cw=fold_cw,
            square_hops=square_hops,
            mute=frozenset(mute),
            hide_reposts=frozenset(hide_reposts),
            filter_words=tuple(word.casefold() for word in words),
            filter_tags=tuple(tag.casefold().lstrip("#") for tag in tags),
        )

    def petname_lookup(self, name: str) -> bytes | None:
        """The feed with petname ``name``, if any."""
        for feed, petname in self.petnames.items():
            if petname == name:
                return feed
        return None


def parse_network_key(text: object) -> bytes:
    """A network key from its 64 hex digits; raise :class:`InvalidArgument`."""
    if not isinstance(text, str) or len(text) != 64:
        raise InvalidArgument("a network key is 64 hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidArgument("a network key is 64 hex digits") from None


def _feeds(table: dict[str, Any], key: str, source: str) -> list[bytes]:
    values = table.get(key, [])
    if not isinstance(values, list) or len(values) > _MAX_LIST:
        raise ConfigError(f"{source}: moderation.{key} must be a list of feed ids")
    try:
        return [feed_id_from_text(value if isinstance(value, str) else "") for value in values]
    except InvalidArgument as exc:
        raise ConfigError(f"{source}: moderation.{key}: {exc}") from None


def _texts(table: dict[str, Any], key: str, source: str) -> list[str]:
    values = table.get(key, [])
    if (
        not isinstance(values, list)
        or len(values) > _MAX_LIST
        or not all(
            isinstance(value, str) and 1 <= len(value) <= 64 and value.isprintable()
            for value in values
        )
    ):
        raise ConfigError(
            f"{source}: moderation.{key} must be a list of words (1 to 64 printable characters)"
        )
    return list(values)


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
        """Create the directory (mode 0700) and a commented config file if missing.

        An existing directory keeps its mode (:meth:`check_private` judges it).
        """
        try:
            self.path.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            if not self.path.is_dir():
                raise
        else:
            # mkdir's mode passes through the umask; chmod's does not.
            os.chmod(self.path, 0o700)
        if not self.config_path.exists():
            self.config_path.write_text(CONFIG_TEMPLATE, encoding="utf-8")

    def check_private(self) -> None:
        """Raise :class:`UnsafePermissions` if other users (group included)
        have any access to the directory; nothing if it does not exist.

        Every way of starting torv on a data directory passes here first
        (:meth:`LocalNode.open`, :meth:`LocalNode.init`, and
        :meth:`ControlClient.connect` before it trusts ``control.sock``). Who
        can enter the directory can read the store and the config; who can
        write in it can plant a control socket that the CLI would talk to.
        The key file's own mode is checked by :meth:`KeyFile.load`. Raises
        :class:`IdentityError` if the directory cannot be examined.
        """
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise IdentityError(
                f"cannot use the data directory {self.path}: {exc.strerror}"
            ) from None
        check_private_mode(self.path, mode, "the data directory", fix="700")

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

    def add_seed(self, address: str) -> None:
        """Add ``address`` (HOST:PORT) to ``[network] bootstrap`` in ``config.toml``;
        raise :class:`ConfigError` if the result would not parse."""
        seeds = [*self.load_config().bootstrap]
        if address not in seeds:
            self.set_setting("network", "bootstrap", [*seeds, address])

    def set_setting(self, section: str, key: str, value: Setting) -> None:
        """Set ``key`` in ``[section]`` of ``config.toml`` (``None`` removes it).

        The rest of the file, comments included, stays as it was. The result
        is checked before it replaces the file (written beside and renamed
        over, so a crash leaves the old file or the new); raises
        :class:`ConfigError` if it would not parse. A setting written over
        several lines by hand cannot be replaced this way (ConfigError too).
        """
        self.create()
        text = self.config_path.read_text(encoding="utf-8")
        header_pattern = re.compile(
            rf"^[ \t]*\[{re.escape(section)}\][ \t]*(#[^\r\n]*)?$", re.MULTILINE
        )
        key_pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=")
        lines = text.splitlines(keepends=True)
        header = next((i for i, line in enumerate(lines) if header_pattern.match(line)), None)
        if header is None:
            if value is None:
                return
            lines += ["\n" if lines and not lines[-1].endswith("\n") else "", f"\n[{section}]\n"]
            header = len(lines) - 1
        end = next(
            (i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")),
            len(lines),
        )
        kept = [line for line in lines[header + 1 : end] if not key_pattern.match(line)]
        new = [] if value is None else [f"{key} = {_toml_value(value)}\n"]
        updated = "".join([*lines[: header + 1], *new, *kept, *lines[end:]])
        Config.parse(updated, source=str(self.config_path))
        temporary = self.config_path.with_name(f".{self.config_path.name}.tmp")
        temporary.write_text(updated, encoding="utf-8")
        os.replace(temporary, self.config_path)


#: What :meth:`Home.set_setting` writes.
Setting = str | bool | int | list[str] | None


def _toml_value(value: str | bool | int | list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_string(item) for item in value) + "]"


_PETNAMES_HEADER: Final = re.compile(r"^[ \t]*\[petnames\][ \t]*(#[^\r\n]*)?", re.MULTILINE)


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
