"""The compat scenarios through Node.js clients: ioredis (``compat/node/scenarios.js``) and node-redis
(the lock recipes, ``compat/node/locks.js``).

Each script prints TAP-style ``ok N - name`` / ``not ok N - name`` lines and a
``1..N`` plan, and exits 0 only when every check passed. ioredis and node-redis are
installed locally (``compat/node/node_modules``, git-ignored); when one is missing its
test fails and says how to install it — a skipped compat test would hide that
the Node client was never exercised.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VfsdProcess

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "scenarios.js"
INSTALL_HINT = ("run `npm install --prefix compat/node` from the repository root (or `npm ci --prefix compat/node` "
                "where compat/node/package-lock.json exists; the lockfile is git-ignored)")

#: Checks the script runs per protocol (RESP2 and RESP3); a dropped check must not go unnoticed.
CHECKS_PER_PROTOCOL = 33


def run_script(script: str, package: str, label: str, port: int) -> subprocess.CompletedProcess[str]:
    """Run ``compat/node/<script>`` against ``port``; fail saying what to install when Node.js or
    ``package`` is missing, or what it printed when it hangs or a check fails."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: install node (>= 20), then " + INSTALL_HINT)
    if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
        pytest.fail(f"{label} is not installed in {NODE_DIR / 'node_modules'}: " + INSTALL_HINT)
    try:
        done = subprocess.run([node, str(NODE_DIR / script), str(port)], capture_output=True, text=True,
                              timeout=60, cwd=NODE_DIR)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"node {script} did not finish within 60s; output so far:\n{partial}")
    output = done.stdout + done.stderr
    assert not [line for line in output.splitlines() if line.startswith("not ok")], output
    assert done.returncode == 0, output
    return done


def test_ioredis_scenarios(vfsd: VfsdProcess) -> None:
    done = run_script(SCRIPT.name, "ioredis", "ioredis", vfsd.port)
    output = done.stdout + done.stderr
    passed = re.findall(r"^ok \d+ - ", done.stdout, flags=re.MULTILINE)
    assert len(passed) == 2 * CHECKS_PER_PROTOCOL, output
    assert f"1..{2 * CHECKS_PER_PROTOCOL}" in done.stdout.splitlines(), output


def test_node_redis_lock_recipes(vfsd: VfsdProcess) -> None:
    """node-redis's usual lock recipe (SET NX PX, Lua release and extend) and LOCK.ACQUIRE on /lk."""
    done = run_script("locks.js", "redis", "node-redis", vfsd.port)
    assert "1..4" in done.stdout.splitlines(), done.stdout + done.stderr
