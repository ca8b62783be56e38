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
from traitlets import Dict, Float, Integer, Unicode

from .course import REPO


@dataclass(frozen=True)
class Limits:
    timeout: float = 600.0  # seconds for the whole notebook
    cell_timeout: int | None = None  # seconds per cell; None: Execute.timeout of nbgrader_config.py
    memory_mb: int = 2048
    max_processes: int = 128  # processes + threads in the box
    max_output_bytes: int = 20_000_000
    max_file_bytes: int = 256_000_000


class Cgroups:
    """A fresh cgroup per submission in the v1 ``memory`` and ``pids`` hierarchies, when the grader
    may create them; otherwise rlimits stand in (RLIMIT_AS for memory; RLIMIT_NPROC, which does
    not bind a root grader)."""

    def __init__(self, limits: Limits):
        self.dirs: dict[str, Path] = {}
        settings = {"memory": {"memory.limit_in_bytes": limits.memory_mb * 2**20},
                    "pids": {"pids.max": limits.max_processes},
                    "cpu": {"cpu.cfs_period_us": 100_000, "cpu.cfs_quota_us": 100_000}}  # one core at most
        name = f"autograde-{uuid.uuid4().hex[:12]}"
        for controller, base in _own_v1_cgroups().items():
            if controller not in settings:
                continue
            try:
                path = base / name
                path.mkdir()
                for key, value in settings[controller].items():
                    (path / key).write_text(str(value))
                self.dirs[controller] = path
            except OSError:
                continue

    def rlimits(self, limits: Limits) -> dict[str, int]:
        values = {"RLIMIT_CORE": 0, "RLIMIT_FSIZE": limits.max_file_bytes,
                  "RLIMIT_CPU": int(limits.timeout) + 30}
        if "memory" not in self.dirs:
            values["RLIMIT_AS"] = limits.memory_mb * 2**20
        if "pids" not in self.dirs:
            values["RLIMIT_NPROC"] = limits.max_processes
        return values

    def out_of_memory(self) -> bool:
        memory = self.dirs.get("memory")
        if memory is None:
            return False
        try:
            control = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
            return int(control.get("oom_kill", 0)) > 0 or int((memory / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def kill_and_remove(self) -> None:
        for path in self.dirs.values():
            for _ in range(50):  # processes may still be exiting
                try:
                    pids = (path / "cgroup.procs").read_text().split()
                    for pid in pids:
                        _kill(int(pid))
                    path.rmdir()
                    break
                except OSError:
                    threading.Event().wait(0.05)


def _own_v1_cgroups() -> dict[str, Path]:
    """controller -> this process's cgroup directory, for writable cgroup v1 hierarchies."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype, options = fields[-3], fields[-1]
            if fstype == "cgroup":
                for controller in options.split(","):
                    mounts[controller] = Path(fields[4])
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller in mounts and os.access(mounts[controller] / path.lstrip("/"), os.W_OK):
                    own[controller] = mounts[controller] / path.lstrip("/")
    return own


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Box:
    """The directories of one sandboxed run. ``root`` is the only place the kernel can write."""

    root: Path
    hide: list[str]
    limits: Limits
    cgroups: Cgroups | None = None
    work: Path = field(init=False)
    grading: Path = field(init=False)
    ipc: Path = field(init=False)

    def __post_init__(self):
        self.work, self.grading, self.ipc = self.root / "work", self.root / "grading", self.root / "ipc"
        for path in (self.work, self.grading, self.ipc, self.work / "tmp"):
            path.mkdir(parents=True, exist_ok=True)

    def write_spec(self, path: Path) -> Path:
        self.cgroups = Cgroups(self.limits)
        work = str(self.work)
        env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
               "HOME": work, "TMPDIR": f"{work}/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "MPLCONFIGDIR": f"{work}/.matplotlib", "IPYTHONDIR": f"{work}/.ipython",
               "JUPYTER_CONFIG_DIR": f"{work}/.jupyter", "JUPYTER_DATA_DIR": f"{work}/.jupyter",
               "JUPYTER_RUNTIME_DIR": str(self.ipc), "PYDEVD_DISABLE_FILE_VALIDATION": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PPO_LAB_GRADING_DIR": str(self.grading)}
        keep = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)} | {str(REPO / "ppo_lab")})
        spec = {"box": str(self.root), "work": work, "hide": self.hide, "keep": keep, "env": env,
                "cgroups": [str(p) for p in self.cgroups.dirs.values()],
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
    hide = Dict().tag(config=True)  # {"paths": [...]}: Dict so it round-trips through a Config
    notebook_timeout = Float(600.0).tag(config=True)
    memory_mb = Integer(2048).tag(config=True)
    max_processes = Integer(128).tag(config=True)
    max_output_bytes = Integer(20_000_000).tag(config=True)
    outcome_file = Unicode("").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources, km=None):
        limits = Limits(self.notebook_timeout, self.timeout, self.memory_mb, self.max_processes, self.max_output_bytes)
        box = Box(Path(self.box_root), list(self.hide.get("paths", [])), limits)
        spec = box.write_spec(box.root.parent / "sandbox.json")
        self.kernel_manager_class = SandboxedKernelManager
        self._stopped: tuple[str, str] | None = None  # (status, reason) when the grader killed the box
        self._output_bytes = 0
        self._cell_timed_out = False
        self._finished_cells: set[int] = set()
        self._windows: list[list] = []  # [grade_id, start, end]: records.jsonl bytes written by a test cell
        self._box = box
        self._spec = spec
        self._open_window = None
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
            self._close_window()
        if outcome["status"] == "ok" and self._cell_timed_out:
            outcome = {"status": "timeout", "reason": f"a cell ran longer than the {self.timeout} s per-cell limit"}
        if outcome["status"] != "ok":
            _mark_cells_not_run(nb, self._finished_cells, outcome["reason"])
        Path(self.outcome_file).write_text(json.dumps({**outcome, "windows": self._windows}))
        return nb, resources

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.sandbox_spec = str(self._spec)
        km.transport = "ipc"
        km.ip = str(self._box.ipc / "kernel")
        km.connection_file = str(self._box.ipc / "kernel.json")
        return km

    def on_cell_start(self, cell, cell_index):
        """Note where records.jsonl ends when a test cell starts: only records written while a
        test cell runs count, so a record forged by the student's own cells is ignored."""
        nbgrader = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and nbgrader.get("grade") and not nbgrader.get("solution"):
            self._open_window = [nbgrader.get("grade_id"), self._records_size()]

    def on_cell_executed(self, **kwargs):
        self._finished_cells.add(kwargs["cell_index"])
        self._close_window()
        super().on_cell_executed(**kwargs)

    def _close_window(self) -> None:
        if self._open_window is not None:
            self._windows.append([*self._open_window, self._records_size()])
            self._open_window = None

    def _records_size(self) -> int:
        try:
            return (self._box.grading / "records.jsonl").stat().st_size
        except OSError:
            return 0

    async def _async_handle_timeout(self, timeout, cell=None):
        self._cell_timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        self._output_bytes += len(json.dumps(msg.get("content", {})))
        if self._output_bytes > self.max_output_bytes:
            self._stop("killed", f"the notebook printed more than {self.max_output_bytes // 1_000_000} MB of output")
            return None
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
