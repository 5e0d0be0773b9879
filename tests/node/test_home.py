"""The data directory and config.toml (node/home.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node import Config, ConfigError, Home, default_data_dir, feed_id_to_text
from node.home import CONFIG_TEMPLATE

ALICE = bytes([1]) * 32
BOB = bytes([2]) * 32


# --- where the data lives -------------------------------------------------------


def test_torv_home_comes_first() -> None:
    environ = {"TORV_HOME": "/srv/torv", "XDG_DATA_HOME": "/xdg"}
    assert default_data_dir(environ) == Path("/srv/torv")


def test_torv_home_expands_the_user() -> None:
    assert default_data_dir({"TORV_HOME": "~/t"}) == Path.home() / "t"


def test_xdg_data_home_comes_second() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/xdg"}) == Path("/xdg/torv")
    assert default_data_dir({"TORV_HOME": "", "XDG_DATA_HOME": "/xdg"}) == Path("/xdg/torv")


def test_home_directory_comes_last() -> None:
    expected = Path.home() / ".local" / "share" / "torv"
    assert default_data_dir({}) == expected
    assert default_data_dir({"TORV_HOME": "", "XDG_DATA_HOME": ""}) == expected


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORV_HOME", "/from/the/environment")
    assert default_data_dir() == Path("/from/the/environment")


# --- parsing config.toml --------------------------------------------------------


def test_the_template_parses_to_the_defaults() -> None:
    assert Config.parse(CONFIG_TEMPLATE) == Config()
    assert Config.parse("") == Config(timeline_limit=50, petnames={})


def test_settings_are_read() -> None:
    config = Config.parse(
        f'[timeline]\nlimit = 7\n\n[petnames]\n"{feed_id_to_text(ALICE)}" = "alice"\n'
        f'"{feed_id_to_text(BOB)}" = "Bob the builder"\n'
    )
    assert config.timeline_limit == 7
    assert config.petnames == {ALICE: "alice", BOB: "Bob the builder"}
    assert config.petname_lookup("alice") == ALICE
    assert config.petname_lookup("Bob the builder") == BOB
    assert config.petname_lookup("carol") is None


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_bounds_are_accepted(limit: int) -> None:
    assert Config.parse(f"[timeline]\nlimit = {limit}\n").timeline_limit == limit


ALICE_TEXT = feed_id_to_text(ALICE)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("colour = 1\n", "unknown setting colour"),
        ("[network]\nport = 1\n", "unknown setting network"),
        ("[timeline]\nlimt = 5\n", "unknown setting timeline.limt"),
        ("timeline = 5\n", "[timeline] must be a table"),
        ("petnames = []\n", "[petnames] must be a table"),
        ('[timeline]\nlimit = "50"\n', "timeline.limit"),
        ("[timeline]\nlimit = true\n", "timeline.limit"),
        ("[timeline]\nlimit = 2.5\n", "timeline.limit"),
        ("[timeline]\nlimit = 0\n", "timeline.limit"),
        ("[timeline]\nlimit = -3\n", "timeline.limit"),
        ("[timeline]\nlimit = 1001\n", "timeline.limit"),
        ('[petnames]\nalice = "alice"\n', "not a feed id"),
        (f'[petnames]\n"{ALICE_TEXT[:-1]}" = "alice"\n', "not a feed id"),
        (f'[petnames]\n"{ALICE_TEXT}" = 5\n', f"petname of {ALICE_TEXT}"),
        (f'[petnames]\n"{ALICE_TEXT}" = ""\n', f"petname of {ALICE_TEXT}"),
        (f'[petnames]\n"{ALICE_TEXT}" = "{"a" * 65}"\n', f"petname of {ALICE_TEXT}"),
        (f'[petnames]\n"{ALICE_TEXT}" = "a\\u0007b"\n', "printable"),
        (f'[petnames]\n"{ALICE_TEXT}" = "torv1bob"\n', "'torv1bob' must not start with torv1"),
        (
            f'[petnames]\n"{ALICE_TEXT}" = "twin"\n"{feed_id_to_text(BOB)}" = "twin"\n',
            "same petname",
        ),
        ("[timeline\n", "config.toml: "),
        ("limit = = 3\n", "config.toml: "),
        ("[timeline]\nlimit = 5\nlimit = 6\n", "config.toml: "),
    ],
)
def test_bad_config_is_rejected_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.parse(text)
    message = str(caught.value)
    assert message.startswith("config.toml: ")
    assert fragment in message
    with pytest.raises(ConfigError, match=r"^/etc/elsewhere\.toml: "):
        Config.parse(text, source="/etc/elsewhere.toml")


def test_petname_of_64_characters_is_accepted() -> None:
    config = Config.parse(f'[petnames]\n"{ALICE_TEXT}" = "{"a" * 64}"\n')
    assert config.petnames == {ALICE: "a" * 64}


# --- the data directory ---------------------------------------------------------


def test_paths(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert home.key_path == tmp_path / "secret.key"
    assert home.store_path == tmp_path / "store.db"
    assert home.config_path == tmp_path / "config.toml"


def test_create_makes_a_private_directory_with_a_template(tmp_path: Path) -> None:
    home = Home(tmp_path / "deep" / "torv")
    home.create()
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    assert home.config_path.read_text(encoding="utf-8") == CONFIG_TEMPLATE
    assert home.load_config() == Config()


def test_create_keeps_an_existing_config(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.write_text("[timeline]\nlimit = 9\n", encoding="utf-8")
    home.create()
    assert home.load_config().timeline_limit == 9


def test_load_config_without_a_file_gives_the_defaults(tmp_path: Path) -> None:
    assert Home(tmp_path / "missing").load_config() == Config()


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.write_text("[timeline]\nlimit = 3\n", encoding="utf-8")
    assert home.load_config().timeline_limit == 3


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.write_text("[timeline]\nlimit = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"timeline\.limit") as caught:
        home.load_config()
    assert str(home.config_path) in str(caught.value)


def test_load_config_accepts_a_file_of_the_largest_size(tmp_path: Path) -> None:
    home = Home(tmp_path)
    line = "#" + "x" * 1022 + "\n"
    home.config_path.write_text(line * 64, encoding="utf-8")
    assert home.config_path.stat().st_size == 64 * 1024
    assert home.load_config() == Config()


def test_load_config_rejects_an_oversize_file(tmp_path: Path) -> None:
    home = Home(tmp_path)
    line = "#" + "x" * 1022 + "\n"
    home.config_path.write_text(line * 64 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than"):
        home.load_config()


def test_load_config_rejects_non_utf8(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.write_bytes(b"[timeline]\n# caf\xe9\nlimit = 5\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        home.load_config()


def test_load_config_of_an_unreadable_path(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        home.load_config()


# --- petnames -------------------------------------------------------------------


def test_add_petname_to_a_new_home(tmp_path: Path) -> None:
    home = Home(tmp_path / "torv")
    home.add_petname(ALICE, "alice")
    assert home.load_config().petnames == {ALICE: "alice"}
    assert home.config_path.read_text(encoding="utf-8").startswith(CONFIG_TEMPLATE[:40])


def test_add_petname_keeps_other_settings_and_names(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_path.write_text("# mine\n[timeline]\nlimit = 5\n", encoding="utf-8")
    home.add_petname(ALICE, "alice")
    home.add_petname(BOB, 'Bob "the" \\builder')
    config = home.load_config()
    assert config.timeline_limit == 5
    assert config.petnames == {ALICE: "alice", BOB: 'Bob "the" \\builder'}
    assert home.config_path.read_text(encoding="utf-8").startswith("# mine\n")


def test_add_petname_renames_a_feed(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.add_petname(ALICE, "alice")
    home.add_petname(BOB, "bob")
    home.add_petname(ALICE, "ally")
    assert home.load_config().petnames == {ALICE: "ally", BOB: "bob"}


@pytest.mark.parametrize(
    "text",
    [
        "[timeline]\nlimit = 5\n\n[petnames]",
        "[petnames]  # people I know\n\n[timeline]\nlimit = 5\n",
        f'[petnames]\n{feed_id_to_text(ALICE)} = "old"\n[timeline]\nlimit = 5\n',
    ],
    ids=["header-at-the-end", "header-with-comment", "bare-key"],
)
def test_add_petname_to_a_hand_written_petnames_table(tmp_path: Path, text: str) -> None:
    home = Home(tmp_path)
    home.config_path.write_text(text, encoding="utf-8")
    home.add_petname(ALICE, "alice")
    assert home.load_config() == Config(timeline_limit=5, petnames={ALICE: "alice"})


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("", "1 to 64"), ("a" * 65, "1 to 64"), ("a\nb", "printable"), ("a\x7fb", "printable")],
)
def test_add_petname_refuses_a_bad_name_and_leaves_the_file(
    tmp_path: Path, name: str, fragment: str
) -> None:
    home = Home(tmp_path)
    home.add_petname(ALICE, "alice")
    before = home.config_path.read_bytes()
    with pytest.raises(ConfigError, match=fragment):
        home.add_petname(BOB, name)
    assert home.config_path.read_bytes() == before


def test_add_petname_refuses_a_name_taken_by_another_feed(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.add_petname(ALICE, "alice")
    before = home.config_path.read_bytes()
    with pytest.raises(ConfigError, match="same petname"):
        home.add_petname(BOB, "alice")
    assert home.config_path.read_bytes() == before
