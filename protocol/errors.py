"""The one error type raised when a message or frame does not follow the protocol."""


class ProtocolError(ValueError):
    """Invalid message: names the field and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
