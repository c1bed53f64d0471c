"""`mixsd evaluate`."""

from mixsd.errors import MixsdError


def evaluate() -> None:
    raise MixsdError("'mixsd evaluate' is not built yet")
