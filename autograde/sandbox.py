"""The box a student's kernel runs in: ``python -m autograde.sandbox SPEC -- KERNEL_CMD...``.

jupyter_client launches this instead of the kernel (see ``execute.SandboxedKernelManager``).
Two stages, both short-lived Python processes that end by exec'ing the next one:

1. outside (still the grader's user): join the submission's cgroups (processes, memory), set
   rlimits, die with the grader, then exec ``unshare`` into new user, network (no network at
   all), mount and PID namespaces; ``--kill-child`` takes the whole PID namespace down with it.
2. inside (``--inside``, PID 1 of the new namespace, root of the new user namespace): build a
   new root file system from an allowlist (the operating system's /usr, /etc and libraries,
   Python and the venv, the grading build of ppo_lab where ppo_lab is installed, and the box,
   the only writable place), plus /proc, a few device nodes and small tmpfs /tmp and /dev/shm;
   pivot into it and detach the old root, so nothing else of the machine (the course, the
   gradebook, other submissions, the checkout and its .git, the disks) exists for the kernel;
   drop every capability (so none of this can be undone), then exec the kernel in the
   throw-away working copy with a clean environment.

Only the standard library is imported here: this runs once per submission and must start fast.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_RELATIME, MS_PRIVATE, MNT_DETACH = 1 << 21, 1 << 18, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Device nodes the kernel may use; nothing else of /dev (not the disks) exists in the box.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
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
    """Build a new root holding only what ``spec["binds"]`` lists, pivot into it, drop privileges."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back out
    new_root = spec["root"]
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for path in ("/dev/shm", "/tmp"):  # first: the box may lie below /tmp
        os.makedirs(new_root + path, exist_ok=True)
        mount("tmpfs", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for source, target, writable in sorted(spec["binds"], key=lambda bind: bind[1]):
        _bind(source, new_root + target, writable)
    for device in DEVICES:
        _bind(device, new_root + device, writable=True)
    os.makedirs(new_root + "/proc", exist_ok=True)
    mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # pivot_root, then detach the old root: no path and no open descriptor leads back to it.
    os.chdir(new_root)
    _check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for cap in range(int(open("/proc/sys/kernel/cap_last_cap").read()) + 1):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir(spec["work"])
    quiet = os.open(os.devnull, os.O_WRONLY)  # the kernel's own start-up chatter, not the cells' output
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.closerange(3, 1 << 16)
    os.execvpe(kernel_cmd[0], kernel_cmd, spec["env"])


def _bind(source: str, target: str, writable: bool) -> None:
    """Bind ``source`` at ``target`` (read-only unless ``writable``); a symlink is copied as one,
    so /bin -> usr/bin stays a link into the bound /usr."""
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    if not os.path.exists(source):
        return
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        flags = os.statvfs(target).f_flag
        kept = sum(ms for st, ms in KEPT_FLAGS.items() if flags & st)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept)


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
