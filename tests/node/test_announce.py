"""The address a node tells other nodes to dial."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.home import Home
from node.runtime import announced_address
from storage.errors import ConfigError


def test_an_explicit_announce_address_wins() -> None:
    assert announced_address(("0.0.0.0", 4710), ("203.0.113.7", 9000)) == ("203.0.113.7", 9000)


def test_a_specific_listen_address_is_announced_as_it_is() -> None:
    assert announced_address(("10.1.2.3", 4710), None) == ("10.1.2.3", 4710)


@pytest.mark.parametrize("wildcard", ["0.0.0.0", ""])
def test_a_wildcard_is_never_announced(wildcard: str) -> None:
    # The route to a seed on loopback leaves through loopback.
    assert announced_address((wildcard, 4710), None, [("127.0.0.1", 5000)]) == (
        "127.0.0.1",
        4710,
    )
    host, port = announced_address((wildcard, 4711), None)
    assert port == 4711
    assert host not in ("0.0.0.0", "")


def test_announce_in_the_config_is_checked(tmp_path: Path) -> None:
    home = Home(tmp_path / "torv")
    home.create()
    home.config_path.write_text('[network]\nannounce = "203.0.113.7:4710"\n')
    assert home.load_config().announce == "203.0.113.7:4710"
    home.config_path.write_text('[network]\nannounce = "no port"\n')
    with pytest.raises(ConfigError, match="HOST:PORT"):
        home.load_config()
