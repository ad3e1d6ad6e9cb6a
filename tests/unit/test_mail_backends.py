"""The console backend (development) shows the whole mail on standard output, never in the log."""

import logging

import pytest

import settings
from apps.mail import backends


async def test_the_console_backend_writes_to_stdout_and_logs_no_link(monkeypatch, capsys, caplog):
    monkeypatch.setattr(settings, "EMAIL_BACKEND", "console")
    link = "http://localhost:5173/reset-password?token=1-abc-secretmac"
    with caplog.at_level(logging.DEBUG):
        await backends.send(backends.message("ann@example.com", "Reset your password", f"Open {link}", None))
    assert link in capsys.readouterr().out
    assert "secretmac" not in caplog.text


@pytest.mark.parametrize("subject", ["Line\nBcc: eve@example.com", "Line\r\nBcc: eve@example.com"])
def test_a_header_cannot_be_injected_through_the_subject(subject):
    with pytest.raises(ValueError):
        backends.message("ann@example.com", subject, "text", None)
