"""The box a student's kernel runs in: ``python -m autograde.sandbox SPEC -- KERNEL_CMD...``.

jupyter_client launches this instead of the kernel (see ``execute.SandboxedKernelManager``).
Two stages, both short-lived Python processes that end by exec'ing the next one:

1. outside (still the grader's user): join the submission's cgroups (processes, memory), set
   rlimits, die with the grader, then exec ``unshare`` into new user, network (no network at
   all), mount and PID namespaces; ``--kill-child`` takes the whole PID namespace down with it.
2. inside (``--inside``, PID 1 of the new namespace, root of the new user namespace): cover the
   paths the student must not see (gradebook, sources with hidden tests, other submissions,
   /tmp) with empty tmpfs, bind back what the kernel needs (the box, Python, ppo_lab), keep
   only the box directory writable, make every other mount
   read-only, drop every capability (so none of this can be undone), then exec the kernel in
   the throw-away working copy with a clean environment.

Only the standard library is imported here: this runs once per submission and must start fast.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_RELATIME = 1 << 21
# statvfs flags that a read-only remount must keep (the kernel refuses to clear locked ones).
KEPT_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
              os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def outside(spec: dict, kernel_cmd: list[str]) -> None:
    for cgroup in spec["cgroups"]:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    for name, value in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the grader's worker dies -> so does the box
    os.execvp("unshare", ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
                          "--kill-child", "--mount-proc", sys.executable, "-I", "-m", "autograde.sandbox",
                          "--inside", json.dumps(spec), "--", *kernel_cmd])


def inside(spec: dict, kernel_cmd: list[str]) -> None:
    box = spec["box"]
    # What the kernel needs (the box, Python, ppo_lab) may lie below a covered path, e.g. a
    # checkout under /tmp: hold on to each, then bind it back in place once the covers are on.
    needed = {path: os.open(path, os.O_PATH) for path in [box, *spec["keep"]] if os.path.isdir(path)}
    for path in sorted(spec["hide"], key=len):  # parents first; covered children no longer exist
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in sorted(needed.items()):
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        os.close(fd)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m")
    writable = {box, "/dev/shm"}
    for mount_point in _mount_points():
        if mount_point in writable:
            continue
        try:
            flags = os.statvfs(mount_point).f_flag
        except OSError:
            continue  # covered by a later mount
        kept = sum(ms for st, ms in KEPT_FLAGS.items() if flags & st)
        try:
            mount(None, mount_point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except OSError:
            if mount_point in ("/", "/proc", "/sys"):
                raise
    for cap in range(int(open("/proc/sys/kernel/cap_last_cap").read()) + 1):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir(spec["work"])
    quiet = os.open(os.devnull, os.O_WRONLY)  # the kernel's own start-up chatter, not the cells' output
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.execvpe(kernel_cmd[0], kernel_cmd, spec["env"])


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    # mountinfo escapes blanks in paths as octal (\040)
    return [p.encode().decode("unicode_escape") for p in points]


def main(argv: list[str]) -> None:
    stage = inside if argv[0] == "--inside" else outside
    if stage is inside:
        argv = argv[1:]
        spec = json.loads(argv[0])
    else:
        with open(argv[0]) as f:
            spec = json.load(f)
    separator = argv.index("--")
    stage(spec, argv[separator + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
