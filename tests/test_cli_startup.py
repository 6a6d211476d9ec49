"""The CLI starts without torch: the config imports it (through the SAE architecture registry), so
the CLI imports the config only in the commands that build one; catalogue commands stay fast."""
from __future__ import annotations

import subprocess
import sys


def test_cli_and_catalogue_commands_do_not_import_torch():
    code = ("import sys, interp.cli, storage.query, storage.export, storage.read\n"
            "print('torch' in sys.modules, 'interp.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
