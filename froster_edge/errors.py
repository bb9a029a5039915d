"""The project's exceptions. The CLI turns each into one line and its exit code.

Library code raises these with messages a user can act on; anything else reaching the CLI is a bug
and keeps its traceback when FROSTER_EDGE_DEBUG=1.

See docs/cli.md.
"""


def shorten(value: object, limit: int = 80) -> str:
    """A value read from a user's file or argument, as text cut to `limit` characters: messages that
    echo input stay one readable line, whatever the input holds."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class FrosterError(Exception):
    """Base class: bad input or a failed step the user can fix. Exit code 1."""

    exit_code = 1


class ConfigError(FrosterError):
    """A config or argument that cannot be used as given."""


class CheckpointError(FrosterError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class PretrainedWeightsError(FrosterError):
    """Pretrained CLIP weights that could not be found, downloaded or loaded."""


class MissingCapability(FrosterError):
    """Something the machine lacks (a GPU, tensorrt, a display, an optional package). Exit code 3,
    apart from bad input (1) and usage errors (2), so scripts can tell "fix the command" from
    "run it elsewhere"."""

    exit_code = 3


class BundleError(FrosterError):
    """An export bundle or label table that is incomplete, tampered with, or from another model."""


class ParityError(FrosterError):
    """An exported model whose outputs differ from torch beyond the parity gate."""
