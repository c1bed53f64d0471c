"""One error type for everything the user can get wrong.

The CLI prints a `MixsdError` as a single line (`error: <message>`) and exits 1, with no traceback.
Messages name the file, row and field when there is one, and what was expected.
"""


class MixsdError(Exception):
    """A user-facing error: bad input, bad config, a missing file, an incompatible set."""
