"""nbgrader's Execute step with the kernel inside the sandbox, plus the limits nbgrader lacks.

nbgrader and nbclient run unchanged in the grader's (trusted) worker process; only the kernel
they start is launched through ``autograde.sandbox`` and talks to them over Unix sockets (the
box has no network). On top of nbgrader's per-cell timeout this adds a whole-notebook time
limit, a memory limit (jupyter/nbgrader#1429), a process limit and a cap on output size, and
turns a dead kernel into a status instead of a failed batch: the cells that ran keep their
outputs, the others get an error output saying why they did not run.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbformat.notebooknode import NotebookNode
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer, Unicode

from ppo_lab.checks import protocol

from . import build

# The operating system the kernel sees (read-only); symlinks such as /bin -> usr/bin stay links.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Limits:
    timeout: float = 600.0  # seconds for the whole notebook
    cell_timeout: int | None = None  # seconds per cell; None: Execute.timeout of nbgrader_config.py
    memory_mb: int = 2048
    max_processes: int = 128  # processes + threads in the box
    max_output_bytes: int = 20_000_000
    max_file_bytes: int = 256_000_000


class Cgroups:
    """A fresh cgroup per submission for memory, processes and CPU: under the cgroup v2 tree, or in
    the v1 ``memory``/``pids``/``cpu`` hierarchies, wherever the grader may create one. What no
    cgroup can enforce falls back to an rlimit, and ``warnings`` says so in words."""

    def __init__(self, limits: Limits, *, mounts: str = "/proc/self/mountinfo", own: str = "/proc/self/cgroup"):
        self.dirs: dict[str, Path] = {}  # controller -> the submission's cgroup directory
        self.version: int | None = None
        name = f"autograde-{uuid.uuid4().hex[:12]}"
        v1, v2 = _own_cgroups(mounts, own)
        if v2 is not None:
            self._create({"memory": ("memory.max", limits.memory_mb * 2**20), "pids": ("pids.max", limits.max_processes),
                          "cpu": ("cpu.max", "100000 100000")}, lambda controller: v2 / name)  # one core at most
            if "memory" in self.dirs:
                _try_write(self.dirs["memory"] / "memory.swap.max", 0)
            self.version = 2 if self.dirs else None
        if not self.dirs:
            self._create({"memory": ("memory.limit_in_bytes", limits.memory_mb * 2**20),
                          "pids": ("pids.max", limits.max_processes), "cpu": ("cpu.cfs_quota_us", 100_000)},
                         lambda controller: v1[controller] / name if controller in v1 else None)
            self.version = 1 if self.dirs else None

    def _create(self, settings: dict[str, tuple[str, object]], where) -> None:
        """Each controller's setting in its cgroup (``where(controller)``, created if need be)."""
        for controller, (setting, value) in settings.items():
            path = where(controller)
            if path is None:
                continue
            try:
                path.mkdir(exist_ok=True)
                (path / setting).write_text(str(value))
            except OSError:
                continue
            self.dirs[controller] = path
        for path in {where(c) for c in settings} - set(self.dirs.values()) - {None}:
            try:
                path.rmdir()
            except OSError:
                pass

    def rlimits(self, limits: Limits) -> dict[str, int]:
        values = {"RLIMIT_CORE": 0, "RLIMIT_FSIZE": limits.max_file_bytes,
                  "RLIMIT_CPU": int(limits.timeout) + 30}
        if "memory" not in self.dirs:
            values["RLIMIT_AS"] = limits.memory_mb * 2**20
        if "pids" not in self.dirs:
            values["RLIMIT_NPROC"] = limits.max_processes
        return values

    def warnings(self) -> list[str]:
        """One sentence per limit that is not enforced as asked."""
        found = []
        if "memory" not in self.dirs:
            found.append("memory: no writable cgroup, so the limit is RLIMIT_AS (address space, not memory "
                         "in use; a kernel may fail earlier than the limit says, and an out-of-memory kill "
                         "is reported as a dead kernel)")
        if "pids" not in self.dirs:
            found.append("processes: no writable cgroup, so the limit is RLIMIT_NPROC, which does not bind "
                         "a grader running as root")
        if "cpu" not in self.dirs:
            found.append("cpu: no writable cgroup, so a submission may use every core (only its time is limited)")
        return found

    def out_of_memory(self) -> bool:
        memory = self.dirs.get("memory")
        if memory is None:
            return False
        try:
            if self.version == 2:
                events = dict(line.split() for line in (memory / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0 or int(events.get("max", 0)) > 0
            control = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
            return int(control.get("oom_kill", 0)) > 0 or int((memory / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def kill_and_remove(self) -> None:
        for path in set(self.dirs.values()):
            for _ in range(50):  # processes may still be exiting
                try:
                    pids = (path / "cgroup.procs").read_text().split()
                    for pid in pids:
                        _kill(int(pid))
                    path.rmdir()
                    break
                except OSError:
                    threading.Event().wait(0.05)


def _own_cgroups(mounts: str, own: str) -> tuple[dict[str, Path], Path | None]:
    """This process's writable cgroup directories: v1 controller -> dir, and the v2 dir (or None)."""
    v1_mounts, v2_mount = {}, None
    with open(mounts) as f:
        for line in f:
            fields = line.split()
            fstype, options = fields[-3], fields[-1]
            if fstype == "cgroup":
                for controller in options.split(","):
                    v1_mounts[controller] = Path(fields[4])
            elif fstype == "cgroup2":
                v2_mount = Path(fields[4])
    v1, v2 = {}, None
    with open(own) as f:
        for line in f:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0" and not controllers and v2_mount is not None:
                candidate = v2_mount / path.lstrip("/")
                v2 = candidate if os.access(candidate, os.W_OK) else None
            for controller in controllers.split(","):
                if controller in v1_mounts and os.access(v1_mounts[controller] / path.lstrip("/"), os.W_OK):
                    v1[controller] = v1_mounts[controller] / path.lstrip("/")
    return v1, v2


def _try_write(path: Path, value) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Box:
    """The directories of one sandboxed run. ``root`` is the only place the kernel can write, and
    ``build`` (the grading build of ppo_lab) is mounted where ppo_lab is installed."""

    root: Path
    build: Path
    limits: Limits
    cgroups: Cgroups | None = None
    work: Path = field(init=False)
    grading: Path = field(init=False)
    ipc: Path = field(init=False)

    def __post_init__(self):
        self.work, self.grading, self.ipc = self.root / "work", self.root / "grading", self.root / "ipc"
        for path in (self.work, self.grading, self.ipc, self.work / "tmp"):
            path.mkdir(parents=True, exist_ok=True)

    def binds(self) -> list[tuple[str, str, bool]]:
        """(source, target, writable): everything the kernel's file system holds besides /proc,
        a few devices and empty /tmp and /dev/shm. Not the course, the checkout or ppo_lab."""
        python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)} | {sys.prefix}
        return [*((path, path, False) for path in (*SYSTEM, *sorted(python))),
                (str(self.build), str(build.PACKAGE), False),
                (str(self.root), str(self.root), True)]

    def write_spec(self, path: Path) -> Path:
        self.cgroups = Cgroups(self.limits)
        work = str(self.work)
        env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
               "HOME": work, "TMPDIR": f"{work}/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "MPLCONFIGDIR": f"{work}/.matplotlib", "IPYTHONDIR": f"{work}/.ipython",
               "JUPYTER_CONFIG_DIR": f"{work}/.jupyter", "JUPYTER_DATA_DIR": f"{work}/.jupyter",
               "JUPYTER_RUNTIME_DIR": str(self.ipc), "PYDEVD_DISABLE_FILE_VALIDATION": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", protocol.GRADING_DIR_VARIABLE: str(self.grading)}
        new_root = self.root.parent / "newroot"
        new_root.mkdir(exist_ok=True)
        spec = {"root": str(new_root), "work": work, "binds": self.binds(), "env": env,
                "cgroups": sorted({str(p) for p in self.cgroups.dirs.values()}),
                "rlimits": self.cgroups.rlimits(self.limits)}
        path.write_text(json.dumps(spec))
        return path


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel through ``autograde.sandbox``; Unix sockets instead of TCP."""

    sandbox_spec = Unicode("").tag(config=True)

    def format_kernel_cmd(self, extra_arguments=None):
        kernel_cmd = super().format_kernel_cmd(extra_arguments)
        return [sys.executable, "-I", "-m", "autograde.sandbox", self.sandbox_spec, "--", *kernel_cmd]


class SandboxedExecute(Execute):
    """nbgrader's ``Execute``, with the kernel in the box described by ``box`` (set per submission)."""

    box_root = Unicode("").tag(config=True)
    build = Unicode("").tag(config=True)  # the grading build of ppo_lab for this assignment
    notebook_timeout = Float(600.0).tag(config=True)
    memory_mb = Integer(2048).tag(config=True)
    max_processes = Integer(128).tag(config=True)
    max_output_bytes = Integer(20_000_000).tag(config=True)
    outcome_file = Unicode("").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources, km=None):
        limits = Limits(self.notebook_timeout, self.timeout, self.memory_mb, self.max_processes, self.max_output_bytes)
        box = Box(Path(self.box_root), Path(self.build), limits)
        spec = box.write_spec(box.root.parent / "sandbox.json")
        self.kernel_manager_class = SandboxedKernelManager
        self._stopped: tuple[str, str] | None = None  # (status, reason) when the grader killed the box
        self._output_bytes = 0
        self._cell_timed_out = False
        self._finished_cells: set[int] = set()
        self._records: list[list] = []  # [test cell grade_id, record data], in the order they arrived
        self._box = box
        self._spec = spec
        timer = threading.Timer(self.notebook_timeout, self._stop, args=(
            "timeout", f"the notebook ran longer than the {self.notebook_timeout:g} s limit"))
        timer.start()
        outcome = {"status": "ok", "reason": ""}
        try:
            nb, resources = super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError, RuntimeError) as error:  # includes a failed kernel start
            outcome = self._why_it_died(error)
        finally:
            timer.cancel()
            box.cgroups.kill_and_remove()
        if outcome["status"] == "ok" and self._cell_timed_out:
            outcome = {"status": "timeout", "reason": f"a cell ran longer than the {self.timeout} s per-cell limit"}
        if outcome["status"] != "ok":
            _mark_cells_not_run(nb, self._finished_cells, outcome["reason"])
        Path(self.outcome_file).write_text(json.dumps({**outcome, "records": self._records,
                                                       "warnings": box.cgroups.warnings()}))
        return nb, resources

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.sandbox_spec = str(self._spec)
        km.transport = "ipc"
        km.ip = str(self._box.ipc / "kernel")
        km.connection_file = str(self._box.ipc / "kernel.json")
        return km

    def on_cell_executed(self, **kwargs):
        self._finished_cells.add(kwargs["cell_index"])
        super().on_cell_executed(**kwargs)

    async def _async_handle_timeout(self, timeout, cell=None):
        self._cell_timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        self._output_bytes += len(json.dumps(msg.get("content", {})))
        if self._output_bytes > self.max_output_bytes:
            self._stop("killed", f"the notebook printed more than {self.max_output_bytes // 1_000_000} MB of output")
            return None
        record = msg.get("content", {}).get("data", {}).get(protocol.RECORD_MIME)
        if record is not None:
            # Taken here, in the grader, as it arrives: nothing the kernel does later changes it.
            # Only a test cell's records count (nbgrader restores test cells from the course).
            meta = self.nb.cells[cell_index].metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                self._records.append([meta.get("grade_id"), record])
            return None  # not an output: the feedback shows the verdicts instead
        return super().output(outs, msg, display_id, cell_index)

    def _stop(self, status: str, reason: str) -> None:
        """Kill the box: the sandbox's first process; --kill-child takes its PID namespace along."""
        if self._stopped is None:
            self._stopped = (status, reason)
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is not None:
            _kill(process.pid)

    def _why_it_died(self, error: Exception) -> dict:
        if self._stopped:
            return {"status": self._stopped[0], "reason": self._stopped[1]}
        if isinstance(error, CellTimeoutError) or self._cell_timed_out:
            return {"status": "timeout", "reason": f"a cell ran longer than the {self.timeout} s per-cell limit "
                                                   "and did not stop when interrupted"}
        if self._box.cgroups.out_of_memory():
            return {"status": "killed", "reason": f"the notebook used more than {self.memory_mb} MB of memory"}
        return {"status": "killed", "reason": "the kernel died (os._exit, a crash, a signal or a resource limit): "
                                              f"{type(error).__name__}: {error}"[:300]}


def _mark_cells_not_run(nb: NotebookNode, finished: set[int], reason: str) -> None:
    """Cells that never finished get an error output: nbgrader then scores their tests 0, and the
    feedback says why, instead of nbgrader's full marks for a grade cell without output."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and index not in finished:
            cell.outputs = [NotebookNode(output_type="error", ename="NotRun", evalue=reason,
                                         traceback=[f"This cell did not run: {reason}."])]
