"""Who is acting from where: the user agent and client IP recorded on sessions and events."""

from __future__ import annotations

import ipaddress
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
        object.__setattr__(self, "ip_address", _address(self.ip_address))


def _address(value: str | None) -> str | None:
    """An IP address as stored (45 characters hold any IPv6 text form, without the zone of a scoped
    link-local peer "fe80::1%eth0", which only names an interface here), or None for anything else (a
    Unix socket path): never a 500 on a column limit."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.split("%", 1)[0]))
    except ValueError:
        return None


# The server's own shell (manage.py): no address.
OPERATOR = Client(user_agent="manage.py")
# What an account's owner sees of a change a staff member made to it (the staff see who: actor_id).
STAFF = Client(user_agent="staff")


def client_of(request) -> Client:
    """The client of an HTTP request. Behind nginx, uvicorn's --proxy-headers has already put the
    real client address (from a trusted proxy only) in request.client."""
    return Client(
        user_agent=request.headers.get("user-agent", ""),
        ip_address=request.client.host if request.client else None,
    )
