"""Who is acting from where: the user agent and client IP recorded on sessions and events."""

from __future__ import annotations

from dataclasses import dataclass

# A header is any bytes a client sent; PostgreSQL refuses NUL in text, and a device list shows no
# control characters: they are dropped rather than the request refused.
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), 0x7F])
USER_AGENT_MAX_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Client:
    user_agent: str = ""
    ip_address: str | None = None

    def __post_init__(self) -> None:
        cleaned = self.user_agent.translate(_CONTROL_CHARACTERS)[:USER_AGENT_MAX_LENGTH]
        object.__setattr__(self, "user_agent", cleaned)


# The server's own shell (manage.py): no address.
OPERATOR = Client(user_agent="manage.py")


def client_of(request) -> Client:
    """The client of an HTTP request. Behind nginx, uvicorn's --proxy-headers has already put the
    real client address (from a trusted proxy only) in request.client."""
    return Client(
        user_agent=request.headers.get("user-agent", ""),
        ip_address=request.client.host if request.client else None,
    )
