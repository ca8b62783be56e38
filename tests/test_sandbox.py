"""The sandbox's limits and file system, without a kernel: cgroup v1/v2 set-up from fake trees,
the warnings for limits that cannot be enforced, and what the box's root holds."""
from pathlib import Path

import pytest

from autograde import build
from autograde.execute import Box, Cgroups, Limits
from autograde.report import report_html
from autograde.results import Result

LIMITS = Limits(memory_mb=512, max_processes=64)


def fake_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> dict:
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(cgroup)
    return {"mounts": str(tmp_path / "mountinfo"), "own": str(tmp_path / "cgroup")}


def test_cgroup_v2_gets_every_limit_in_one_group(tmp_path):
    tree = tmp_path / "unified"
    (tree / "grader").mkdir(parents=True)
    proc = fake_proc(tmp_path, f"30 25 0:26 / {tree} rw,nosuid - cgroup2 cgroup2 rw\n", "0::/grader\n")
    groups = Cgroups(LIMITS, **proc)
    assert groups.version == 2 and set(groups.dirs) == {"memory", "pids", "cpu"}
    (group,) = set(groups.dirs.values())
    assert group.parent == tree / "grader"
    assert (group / "memory.max").read_text() == str(512 * 2**20)
    assert (group / "pids.max").read_text() == "64" and (group / "cpu.max").read_text() == "100000 100000"
    assert groups.warnings() == [] and "RLIMIT_AS" not in groups.rlimits(LIMITS)


def test_cgroup_v1_gets_a_group_per_controller(tmp_path):
    lines, own = [], []
    for number, controller in enumerate(("memory", "pids", "cpu")):
        (tmp_path / controller / "grader").mkdir(parents=True)
        lines.append(f"{40 + number} 25 0:{30 + number} / {tmp_path / controller} rw - cgroup cgroup rw,{controller}")
        own.append(f"{number + 1}:{controller}:/grader")
    groups = Cgroups(LIMITS, **fake_proc(tmp_path, "\n".join(lines) + "\n", "\n".join(own) + "\n"))
    assert groups.version == 1 and set(groups.dirs) == {"memory", "pids", "cpu"}
    assert (groups.dirs["memory"] / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert (groups.dirs["pids"] / "pids.max").read_text() == "64"
    assert groups.warnings() == []


def test_without_cgroups_rlimits_stand_in_and_each_gap_is_said(tmp_path):
    groups = Cgroups(LIMITS, **fake_proc(tmp_path, "22 1 0:5 / /proc rw - proc proc rw\n", "0::/\n"))
    assert groups.dirs == {} and groups.version is None
    assert {"RLIMIT_AS", "RLIMIT_NPROC"} <= set(groups.rlimits(LIMITS))
    warnings = groups.warnings()
    assert [w.split(":")[0] for w in warnings] == ["memory", "processes", "cpu"]
    page = report_html([Result("alice", "00_fixture", warnings=warnings)])
    assert "Limits the sandbox did not enforce" in page and "RLIMIT_NPROC" in page


def test_the_box_holds_the_system_python_the_build_and_itself_only(tmp_path):
    package = build.build(tmp_path / "build", {"test_pg_loss"})
    box = Box(tmp_path / "box", package, LIMITS)
    binds = box.binds()
    writable = [target for _, target, rw in binds if rw]
    assert writable == [str(tmp_path / "box")]
    assert (str(package), str(build.PACKAGE), False) in binds  # the build where ppo_lab is installed
    repo = build.PACKAGE.parent
    assert not any(Path(source) == repo or repo in Path(source).parents and ".venv" not in Path(source).parts
                   for source, _, _ in binds if source != str(package)), binds


@pytest.mark.parametrize("check_id, module, name", [("test_pg_loss", "exercises/pg.py", "pg_loss"),
                                                    ("test_compute_gae_dones", "exercises/gae.py", "compute_gae")])
def test_the_build_has_no_reference_registry_or_mistakes(tmp_path, check_id, module, name):
    package = build.build(tmp_path, {check_id})
    source = (package / module).read_text()
    assert f"def {name}" not in source and f"{name} = _student_answer({name!r})" in source
    assert sorted(p.name for p in (package / "checks").iterdir()) == \
        ["__init__.py", "protocol.py", "runners.py", "student.py"]
