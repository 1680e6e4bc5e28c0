"""EplbError: a failed libeplb call, with the library's status and message."""
import enum

from . import _library


class Status(enum.IntEnum):
    """eplb_status from eplb.h (values fixed by the C API)."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_SHAPE = 2
    INVALID_WEIGHT = 3
    LOG2PHY_TOO_SMALL = 4
    POLICY = 5
    OUT_OF_MEMORY = 6
    BACKEND_UNAVAILABLE = 7
    BACKEND_FAILURE = 8
    UNSUPPORTED = 9
    IO = 10
    PARSE = 11
    INTERNAL = 12


class EplbError(Exception):
    """A libeplb call failed.

    Attributes:
        status: the eplb_status (a Status, or a plain int for a value this
            package does not know), e.g. Status.INVALID_WEIGHT.
        message: the library's detailed message (eplb_context_last_error or
            eplb_last_error), or its short status text when it gave none.
    """

    def __init__(self, status, message=""):
        try:
            self.status = Status(status)
            name = "EPLB_ERR_" + self.status.name
        except ValueError:
            self.status = int(status)
            name = "eplb status %d" % self.status
        if not message:
            message = _library.text(_library.lib.eplb_status_string(int(status)))
        self.message = message
        super().__init__("%s: %s" % (name, message))
