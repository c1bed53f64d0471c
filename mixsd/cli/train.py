"""`mixsd train`."""

from mixsd.errors import MixsdError


def train() -> None:
    raise MixsdError("'mixsd train' is not built yet")
