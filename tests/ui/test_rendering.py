"""How posts and times read: pure functions, no app."""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.views import PostView
from storage.payloads import MAX_TEXT_CHARS
from ui.format import duration, rate, relative_time
from ui.screens.compose import problem_with
from ui.screens.settings import parse_list
from ui.widgets.post import post_text, stats_line

NOW = 1_773_489_600_000
SECOND = 1000


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (-30 * SECOND, "now"),
        (0, "now"),
        (59 * SECOND, "now"),
        (60 * SECOND, "1m"),
        (2 * 60 * SECOND + 59 * SECOND, "2m"),
        (3 * 3600 * SECOND, "3h"),
        (5 * 86400 * SECOND + 10, "5d"),
        (400 * 86400 * SECOND, "1y"),
    ],
)
def test_relative_time(ago: int, shown: str) -> None:
    assert relative_time(NOW - ago, NOW) == shown


def test_durations_and_rates() -> None:
    assert duration(-1) == "0s"
    assert duration(8.7) == "8s"
    assert duration(184) == "3m 04s"
    assert duration(2 * 3600 + 5 * 60) == "2h 05m"
    assert duration(86400 + 3 * 3600) == "1d 03h"
    assert rate(10, 4.0) == "2.5/s"
    assert rate(10, 0.0) == "—"


POST = PostView(
    id=b"\x01" * 32,
    item_id=b"\x01" * 32,
    author=b"\x02" * 32,
    author_name="~Ada",
    author_short="@aaaaaaaa",
    timestamp=NOW - 120 * SECOND,
    text="The engine weaves algebraic patterns #engines",
    cw=None,
    reply_to=None,
    reply_to_name=None,
    root=None,
    tags=("engines",),
    reactions={},
    reposts=0,
    liked=False,
    reposted_by=None,
    deleted=False,
    forked=False,
    cursor=(NOW, 1),
)


def test_a_plain_post() -> None:
    assert post_text(POST, NOW).plain == (
        "~Ada @aaaaaaaa · 2m\nThe engine weaves algebraic patterns #engines"
    )


def test_a_reposted_reply_with_reactions_from_a_forked_feed() -> None:
    post = replace(
        POST,
        reply_to=b"\x03" * 32,
        reply_to_name="~Bruno",
        reposted_by="~Chiara",
        reactions={"♥": 2, "🔥": 1},
        reposts=3,
        liked=True,
        forked=True,
    )
    assert post_text(post, NOW).plain.splitlines() == [
        "↻ reposted by ~Chiara",
        "~Ada @aaaaaaaa · 2m  ⚠ forked feed",
        "↳ reply to ~Bruno",
        "The engine weaves algebraic patterns #engines",
        "♥ 2  🔥 1  ↻ 3 · liked",
    ]
    assert stats_line(replace(POST, liked=True)).plain == "liked"


def test_a_content_warning_hides_the_text_until_unfolded() -> None:
    post = replace(POST, cw="spoilers")
    folded = post_text(post, NOW).plain
    assert "CW: spoilers" in folded
    assert "engine" not in folded.split("\n", 1)[1]
    assert "The engine weaves" in post_text(post, NOW, unfolded=True).plain


def test_missing_and_deleted_posts_say_so() -> None:
    assert post_text(replace(POST, deleted=True, text=""), NOW).plain == "(deleted by its author)"
    assert "not reached" in post_text(replace(POST, held=False, text=""), NOW).plain


def test_a_hidden_post_is_one_line_that_says_why() -> None:
    hidden = replace(POST, text="", hidden=True, reason="muted")
    assert post_text(hidden, NOW).plain == "hidden: muted"
    assert post_text(hidden, NOW, why=True).plain == "hidden: muted"
    assert post_text(replace(hidden, reason=""), NOW).plain == "hidden: by your settings"


def test_why_adds_the_reason_or_says_there_is_none() -> None:
    assert post_text(replace(POST, reason="you follow ~Ada"), NOW, why=True).plain.endswith(
        "\nwhy: you follow ~Ada"
    )
    assert post_text(POST, NOW, why=True).plain.endswith("\nwhy: no reason recorded")
    assert "why" not in post_text(replace(POST, reason="you follow ~Ada"), NOW).plain


def test_what_a_list_of_comma_separated_filters_holds() -> None:
    assert parse_list(" spoiler, ,Election ,spoiler") == ["spoiler", "Election"]
    assert parse_list("#crypto, # nsfw, ", strip="#") == ["crypto", "nsfw"]
    assert parse_list("") == []


def test_what_cannot_be_posted() -> None:
    assert problem_with("hello") is None
    assert problem_with("  \n ") is not None
    assert problem_with("x" * MAX_TEXT_CHARS) is None
    assert problem_with("x" * (MAX_TEXT_CHARS + 1)) is not None
