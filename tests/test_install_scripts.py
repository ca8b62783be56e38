"""Install steps that a machine with everything installed would never run, run here with stubs.

``scripts/install-chromium.sh`` only acts where chromium is missing, so a CI machine that
already has it would never notice a broken install line. These tests run the script with stub
``apt-get``/``sudo``/``id`` on PATH and assert the exact commands it would run.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-chromium.sh"
# `make test` runs this file: a make started here must not inherit the outer make's settings
# (MAKELEVEL makes it print "Entering directory"; MAKEFLAGS could carry -n or -k).
PLAIN_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}

LOG_AND = 'printf "%s\\n" "{name} $*" >> "$STUB_LOG"\n'
STUBS = {
    # apt-get logs its arguments and DEBIAN_FRONTEND as it sees it; "install" puts a chromium on PATH.
    "apt-get": 'printf "%s\\n" "apt-get DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-unset} $*" >> "$STUB_LOG"\n'
               'if [ "$1" = install ]; then\n'
               '  printf "#!/bin/sh\\n" > "$STUB_DIR/chromium"; /bin/chmod +x "$STUB_DIR/chromium"\nfi\n',
    "sudo": LOG_AND.format(name="sudo") + 'exec "$@"\n',
    "id": 'echo "$STUB_UID"\n',
}


def run_script(tmp_path: Path, *, uid: int, chromium_present: bool = False, apt_installs: bool = True):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in STUBS.items():
        if name == "apt-get" and not apt_installs:
            body = body.split("if [")[0]
        (stubs / name).write_text("#!/bin/bash\n" + body)
        (stubs / name).chmod(0o755)
    (stubs / "env").symlink_to(shutil.which("env"))  # the script uses env to pass DEBIAN_FRONTEND through sudo
    if chromium_present:
        (stubs / "chromium").write_text("#!/bin/sh\n")
        (stubs / "chromium").chmod(0o755)
    log = tmp_path / "commands.log"
    log.touch()
    # Only the stubs on PATH: nothing real can be installed, and /usr/bin/chromium is not seen.
    environment = {"PATH": str(stubs), "STUB_LOG": str(log), "STUB_DIR": str(stubs), "STUB_UID": str(uid)}
    result = subprocess.run(["/bin/bash", str(SCRIPT)], env=environment, capture_output=True, text=True)
    return result, log.read_text().splitlines()


def test_as_root_it_runs_apt_get_directly(tmp_path):
    result, commands = run_script(tmp_path, uid=0)
    assert result.returncode == 0, result.stderr
    assert commands == ["apt-get DEBIAN_FRONTEND=unset update -qq",
                        "apt-get DEBIAN_FRONTEND=noninteractive install -y -qq chromium"]


def test_as_another_user_it_goes_through_sudo(tmp_path):
    result, commands = run_script(tmp_path, uid=1000)
    assert result.returncode == 0, result.stderr
    assert commands == ["sudo apt-get update -qq",
                        "apt-get DEBIAN_FRONTEND=unset update -qq",
                        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                        "apt-get DEBIAN_FRONTEND=noninteractive install -y -qq chromium"]


@pytest.mark.parametrize("uid", [0, 1000])
def test_it_does_nothing_where_chromium_is_installed(tmp_path, uid):
    result, commands = run_script(tmp_path, uid=uid, chromium_present=True)
    assert result.returncode == 0, result.stderr
    assert commands == []


def test_it_fails_loudly_when_the_install_leaves_no_chromium(tmp_path):
    result, _ = run_script(tmp_path, uid=0, apt_installs=False)
    assert result.returncode != 0
    assert "still not on PATH" in result.stderr


def test_make_test_installs_chromium_through_the_script():
    dry_run = subprocess.run(["make", "-n", "chromium"], cwd=ROOT, env=PLAIN_ENV, capture_output=True, text=True,
                             check=True)
    assert dry_run.stdout.strip() == "bash scripts/install-chromium.sh"
    makefile = (ROOT / "Makefile").read_text()
    assert "test: $(STAMP) chromium" in makefile


def test_make_builds_the_venv_from_nothing_with_the_pinned_torch_first(tmp_path):
    """The venv recipe only runs on a fresh clone; a dry run with no venv shows every command."""
    venv = tmp_path / "venv"
    dry_run = subprocess.run(["make", "-n", "-B", f"VENV={venv}", str(venv / ".installed")], cwd=ROOT,
                             env=PLAIN_ENV, capture_output=True, text=True, check=True)
    lines = [line for line in dry_run.stdout.splitlines() if not line.startswith("#")]
    assert lines[0] == f"test -x {venv}/bin/python || python3 -m venv {venv}"
    assert "torch==2.13.0" in lines[1] and "-c requirements/constraints.txt" in lines[1]
    assert "-e '.[test]'" in lines[2] and "-c requirements/constraints.txt" in lines[2]
    assert lines[3] == f"touch {venv}/.installed"
