"""The registry of what starts and stops: importing the installed apps is enough to fill it."""

import os
import subprocess
import sys

from tests.helpers import ROOT


def test_the_installed_apps_register_their_components_when_imported():
    # A fresh interpreter, as manage.py is: nothing imported but settings and the registry.
    code = (
        "import settings\n"
        "from apps.core import lifecycle\n"
        "for app in settings.INSTALLED_APPS: lifecycle.register_components_of(app)\n"
        "print(sorted(c.name for c in lifecycle.components()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = result.stdout.strip()
    assert "'revocation'" in names and "'hashing pool'" in names, names
