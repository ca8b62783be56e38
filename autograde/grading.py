"""``grade``: prepare the course directory, grade every submission in workers, merge, report.

Only this (parent) process writes the real gradebook and the journal, one finished submission
at a time, so parallel grading needs no concurrent SQLite writers. The journal is append-only
and fsync'ed after each merge: kill -9 loses nothing that was merged, and a re-run skips what
the journal holds (same submission content, same course source) instead of duplicating it.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import nbformat

from . import course, report, submissions, worker
from .execute import Limits

__all__ = ["Limits", "grade_class"]
SECRET_VARIABLE = "PPO_LAB_COURSE_SECRET"
# What a student's kernel may see of the repository: the installed packages, nothing else.
REPO_VISIBLE = {".venv", "ppo_lab", "ppo_lab.egg-info", "pyproject.toml"}


class Journal:
    """One JSON line per graded (student, assignment); the last line for a pair wins."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[tuple[str, str], dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # the line being written when the grader was killed
                self.entries[(entry["student"], entry["assignment"])] = entry

    def done(self, student: str, assignment: str, fingerprint: str) -> bool:
        entry = self.entries.get((student, assignment))
        return entry is not None and entry["fingerprint"] == fingerprint and not entry.get("retry")

    def append(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[(entry["student"], entry["assignment"])] = entry


def grade_class(submitted: Path, out: Path, *, source: Path = course.SOURCE, assignment_ids: list[str] | None = None,
                jobs: int = 1, limits: Limits = Limits()) -> list[dict]:
    out, source = out.resolve(), source.resolve()
    state = out / ".autograde"
    state.mkdir(parents=True, exist_ok=True)
    if not submitted.exists():
        raise course.CourseError(f"{submitted} does not exist")
    known = course.assignments(source)
    assignment_ids = assignment_ids or known
    unknown = set(assignment_ids) - set(known)
    if unknown:
        raise course.CourseError(f"no source notebooks for {sorted(unknown)} in {source}")
    source_hashes = {a: _prepare_assignment(out, source, a) for a in assignment_ids}
    _write_course_config(out)

    shutil.rmtree(state / "unpacked", ignore_errors=True)
    (state / "unpacked").mkdir()
    try:
        root = submissions.unpack(submitted.resolve(), state / "unpacked")
    except (OSError, ValueError) as error:  # a broken zip: nothing can be graded
        raise course.CourseError(f"cannot read {submitted}: {error}") from None
    journal = Journal(state / "journal.jsonl")
    secret = _secret(state)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=_jobs_base()))
    hide = (str(out), str(root), str(source), str(_jobs_base()), tempfile.gettempdir(),
            *(str(p) for p in course.REPO.iterdir() if p.name not in REPO_VISIBLE))
    todo = []
    for student in submissions.students(root):
        for assignment in assignment_ids:
            folder = root / student / assignment
            fingerprint = submissions.fingerprint(folder) + source_hashes[assignment]
            if not journal.done(student, assignment, fingerprint):
                todo.append((fingerprint, worker.Job(student, assignment, folder, out, scratch,
                                                     worker.hidden_seed(secret, student, assignment), limits, hide)))
    try:
        _run(todo, jobs, out, journal)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = sorted(journal.entries.values(), key=lambda e: (e["assignment"], e["student"]))
    report.write(out, results)
    return results


def _run(todo: list, jobs: int, out: Path, journal: Journal) -> None:
    from tqdm import tqdm

    attempts: dict[tuple[str, str], int] = {}
    tqdm.monitor_interval = 0  # no monitor thread in the process the workers are forked from
    _warm_up()  # before forking: the workers inherit nbgrader and ppo_lab already imported
    with tqdm(total=len(todo), desc="grading", unit="submission", disable=not todo) as bar:
        while todo:
            broken = []
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(worker.grade, job): (fingerprint, job) for fingerprint, job in todo}
                for future in as_completed(futures):
                    fingerprint, job = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append((fingerprint, job))
                        continue
                    except Exception as error:  # noqa: BLE001 - one submission, not the batch
                        result = _grader_failed(job, f"{type(error).__name__}: {error}")
                    _merge(result, out)
                    journal.append({**result, "fingerprint": fingerprint})
                    bar.update()
            todo = []
            for fingerprint, job in broken:  # a worker died: retry its submissions once, in a new pool
                key = (job.student, job.assignment)
                attempts[key] = attempts.get(key, 0) + 1
                if attempts[key] < 2:
                    todo.append((fingerprint, job))
                else:
                    result = _grader_failed(job, "the grader's worker process died while grading it")
                    _merge(result, out)
                    journal.append({**result, "fingerprint": fingerprint})
                    bar.update()


def _warm_up() -> None:
    """Import nbgrader and the checks once, before the workers are forked, not once per submission."""
    import nbgrader.converters  # noqa: F401
    import ppo_lab.checks  # noqa: F401


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a killed grader (kill -9): forked, it would wait for work forever."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _grader_failed(job: worker.Job, reason: str) -> dict:
    """A submission the grader could not grade (a grader bug, not the student's): zero, marked for
    a retry so the next run grades it again."""
    items = [{"item": cell.metadata.nbgrader["grade_id"], "notebook": name, "score": 0.0,
              "max_score": float(cell.metadata.nbgrader.get("points", 0)), "message": reason, "mistake": None,
              "flags": ""}
             for name, nb in worker.masters(job.out, job.assignment).items() for cell in nb.cells
             if cell.metadata.get("nbgrader", {}).get("grade")]
    return {"student": job.student, "assignment": job.assignment, "course_dir": "", "status": "invalid",
            "reason": f"grader error: {reason}", "flags": ["grader-error"], "notes": [], "items": items,
            "retry": True}


def _merge(result: dict, out: Path) -> None:
    """Copy the submission's nbgrader folders in, and record it in the real gradebook with
    nbgrader's own SaveAutoGrades, then the grader's scores over it."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades

    student, assignment = result["student"], result["assignment"]
    scratch = Path(result["course_dir"]) if result["course_dir"] else None
    for step in ("submitted", "autograded", "feedback"):
        target = out / step / student / assignment
        shutil.rmtree(target, ignore_errors=True)
        if scratch and (scratch / step / student / assignment).is_dir():
            shutil.copytree(scratch / step / student / assignment, target)
    db_url = course.load_config(out).CourseDirectory.db_url
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
    for path in sorted((out / "autograded" / student / assignment).glob("*.ipynb")):
        resources = {"nbgrader": {"assignment": assignment, "notebook": path.stem, "student": student,
                                  "db_url": db_url}}
        SaveAutoGrades().preprocess(nbformat.read(path, as_version=4), resources)
    worker.apply_scores(db_url, assignment, student, result["items"])
    if scratch:
        shutil.rmtree(scratch.parent, ignore_errors=True)


def _prepare_assignment(out: Path, source: Path, assignment: str) -> str:
    """Source notebooks into ``out/solutions``, the assignment into the gradebook (nbgrader
    generate_assignment) and into a template gradebook for the workers, once per source version."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (source / assignment).rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    source_hash = digest.hexdigest()[:16]
    stamp = out / ".autograde" / f"source-{assignment}.sha256"
    if stamp.exists() and stamp.read_text() == source_hash:
        return source_hash
    shutil.rmtree(out / "solutions" / assignment, ignore_errors=True)
    shutil.copytree(source / assignment, out / "solutions" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    course.generate(out, [assignment])
    # The workers' template: this gradebook without its students. A copy, not a second
    # generate_assignment: creating a gradebook runs nbgrader's `alembic` command (seconds).
    from nbgrader.api import Gradebook

    template = out / ".autograde" / f"template-{assignment}.db"
    partial = template.with_suffix(".partial")
    shutil.copy(out / "gradebook.db", partial)
    with Gradebook(f"sqlite:///{partial}") as gb:
        for student in list(gb.students):
            gb.remove_student(student.id)
    os.replace(partial, template)
    stamp.write_text(source_hash)
    return source_hash


def _write_course_config(out: Path) -> None:
    """So `nbgrader formgrader` (or jupyter lab) started in ``out`` grades this gradebook.
    An instructor's own nbgrader_config.py there is left as it is."""
    config = out / "nbgrader_config.py"
    if not config.exists():
        config.write_text(
            "# Written by `python -m autograde grade`: the ppo-lab course settings, rooted in this folder.\n"
            "import os\n\nc = get_config()  # noqa: F821\n"
            f"load_subconfig({str(course.COURSE_CONFIG)!r})  # noqa: F821\n"
            "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n")


def _secret(state: Path) -> bytes:
    """Key for the hidden-case seeds: $PPO_LAB_COURSE_SECRET, else one kept in the course directory."""
    if os.environ.get(SECRET_VARIABLE):
        return os.environ[SECRET_VARIABLE].encode()
    path = state / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _jobs_base() -> Path:
    base = Path(tempfile.gettempdir()) / "autograde-jobs"
    base.mkdir(mode=0o700, exist_ok=True)
    return base
