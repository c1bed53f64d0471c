"""`mixsd generate`."""

from mixsd.errors import MixsdError


def generate() -> None:
    raise MixsdError("'mixsd generate' is not built yet")
