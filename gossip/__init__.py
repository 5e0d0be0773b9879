"""The wire: secure channel, framing, wire messages, the pubsub router, feed
sync and peer sessions. Nothing here yet: the network arrives with issue 3;
until then logs move between nodes as export files (``torv export``/``import``)."""
