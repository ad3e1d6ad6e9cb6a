"""The README's curl walkthrough works as written, against a real uvicorn server."""

import json
import os
import re
import subprocess

import pytest

from tests.helpers import ROOT, live_server, migrate


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:curl.*?-->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "the curl walkthrough block is missing from README.md"
    return match.group(1)


@pytest.fixture
def server(tmp_path):
    url = f"sqlite://{tmp_path / 'readme.sqlite3'}"
    migrate(url)
    with live_server(url, tmp_path) as base:
        yield base


def test_curl_walkthrough(server):
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        env={**os.environ, "BASE": server},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    registered = json.loads(lines[0])
    assert registered["user"]["username"] == "ann" and registered["refresh_token"]
    assert json.loads(lines[1])["email"] == "ann@example.com"  # GET /user/me
    assert json.loads(lines[2])["username"] == "ann_b"  # PATCH /user/me
    assert lines[3:5] == ["204", "204"]  # password change, logout
    assert json.loads(lines[5])["code"] == "invalid_token"  # the logged-out token
    assert lines[6] == "204"  # account deleted
