"""The terminal app (textual). Nothing here yet: the app arrives with issue 4;
``torv demo`` prints the timeline meanwhile."""
