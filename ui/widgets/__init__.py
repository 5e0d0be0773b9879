"""Widgets of the app: a post, a list of posts, the tab bar."""
