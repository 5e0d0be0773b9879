"""The screens of the app: the six main ones, and those pushed on top of them."""
