"""The terminal app (textual): :func:`ui.app.make_app` builds it around a
:class:`node.client.NodeClient`; :mod:`ui.onboarding` asks a new user for a
name before an identity exists. Nothing in ``ui`` imports trio: every call to
the node goes through the client, off the UI loop."""

__all__: list[str] = []
