"""scripts/setup.sh on machines unlike ours: no venv module, a browser without its driver, no root.

Each case runs the real script in a copy of the repository layout with stand-ins for python3,
apt-get, id and the browser on PATH, and checks what it asked for and what it said.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/bin/bash
echo "python3 $*" >> "$LOG"
if [ "$1 $2" = "-m venv" ]; then
  [ -e "$STATE/venv-installed" ] || [ -z "$NO_VENV" ] || { echo "ensurepip is not available" >&2; exit 1; }
  mkdir -p "$3/bin"; printf '#!/bin/bash\\necho "venv-python $*" >> "$LOG"\\n' > "$3/bin/python"; chmod +x "$3/bin/python"
  exit 0
fi
[ "$1" = "-c" ] && { echo 3.11; exit 0; }
exit 0
"""
FAKE_APT = """#!/bin/bash
echo "apt-get $*" >> "$LOG"
case "$*" in *python3-venv*) touch "$STATE/venv-installed";; esac
exit 0
"""


def _run(tmp_path: Path, *, root: bool, no_venv: bool = False, chromium: bool = False, driver: bool = False):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    tools = {"python3": FAKE_PYTHON, "apt-get": FAKE_APT, "id": f"#!/bin/bash\necho {0 if root else 1000}\n"}
    if chromium:
        tools["chromium"] = "#!/bin/bash\nexit 0\n"
    if driver:
        tools["chromedriver"] = "#!/bin/bash\nexit 0\n"
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name in ("bash", "dirname", "rm", "mkdir", "chmod", "touch"):  # nothing else of this machine is on PATH
        (bin_dir / name).symlink_to(shutil.which(name))
    log = tmp_path / "calls.log"
    env = {"PATH": str(bin_dir), "LOG": str(log), "STATE": str(state), "HOME": str(tmp_path)}
    if no_venv:
        env["NO_VENV"] = "1"
    p = subprocess.run([shutil.which("bash"), str(repo / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60)
    return p, log.read_text() if log.exists() else ""


def test_root_on_debian_without_venv_installs_it_and_goes_on(tmp_path):
    p, calls = _run(tmp_path, root=True, no_venv=True, chromium=True, driver=True)
    assert p.returncode == 0, p.stderr
    assert "apt-get install -y -qq python3-venv" in calls and "apt-get install -y -qq python3.11-venv" in calls
    assert calls.count("python3 -m venv .venv") == 2 and "venv-python -m pip install --quiet -e .[dev]" in calls
    assert "ready:" in p.stdout


def test_a_user_without_venv_and_without_root_is_told_what_to_install(tmp_path):
    p, calls = _run(tmp_path, root=False, no_venv=True)
    assert p.returncode == 1 and "apt-get" not in calls
    assert "sudo apt-get install python3-venv python3.11-venv" in p.stderr


def test_chromium_without_its_driver_installs_the_driver(tmp_path):
    p, calls = _run(tmp_path, root=True, chromium=True, driver=False)
    assert p.returncode == 0, p.stderr
    assert "apt-get install -y -qq chromium chromium-driver" in calls


def test_a_non_root_user_is_told_what_was_skipped(tmp_path):
    p, calls = _run(tmp_path, root=False)
    assert p.returncode == 0, p.stderr
    assert "apt-get" not in calls and "skipped installing chromium and chromium-driver (needs root" in p.stdout


def test_nothing_is_installed_when_everything_is_there(tmp_path):
    p, calls = _run(tmp_path, root=True, chromium=True, driver=True)
    assert p.returncode == 0 and "apt-get" not in calls and os.path.exists(tmp_path / "repo" / ".venv" / "bin" / "python")
