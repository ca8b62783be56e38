"""The nbgrader course: settings from the repository's nbgrader_config.py, and the release.

NbGraderAPI does not read nbgrader_config.py by itself, so every Config used here starts from
that file, loaded explicitly, and is then re-rooted where the work happens.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from . import chapters

REPO = Path(__file__).resolve().parents[1]
COURSE_CONFIG = REPO / "nbgrader_config.py"
SOURCE = REPO / "solutions"
RELEASE = REPO / "notebooks"

log = logging.getLogger("autograde")


class CourseError(RuntimeError):
    """The grader itself cannot run (bad course, nbgrader failure): exit code != 0."""


def load_config(root: Path, db_url: str | None = None) -> Config:
    """The course's nbgrader settings, with the course directory (and gradebook) at ``root``."""
    # nbgrader runs the `alembic` command when it creates a gradebook: find it beside this Python
    # even when the venv is not activated.
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    config = PyFileConfigLoader(COURSE_CONFIG.name, path=str(COURSE_CONFIG.parent)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url or f"sqlite:///{Path(root) / 'gradebook.db'}"
    config.NbGraderAPI.log_level = "WARN"
    # The exchange (nbgrader's release/collect service) is not used here; this silences its check.
    config.Exchange.root = tempfile.gettempdir()
    return config


def assignments(source: Path = SOURCE) -> list[str]:
    """Chapter folders holding at least one source notebook, e.g. ``01_vanilla_pg``."""
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def api(config: Config):
    from nbgrader.apps import NbGraderAPI  # imported late: it pulls in most of Jupyter

    return NbGraderAPI(config=config)


def run_nbgrader(result: dict, what: str) -> None:
    """NbGraderAPI reports failures in its result instead of raising: raise them."""
    if not result["success"]:
        raise CourseError(f"nbgrader {what} failed:\n{result.get('error') or result.get('log')}")


def generate(root: Path, assignment_ids: list[str], db_url: str | None = None) -> None:
    """``nbgrader generate_assignment`` in the course at ``root`` (source must be in place)."""
    grader = api(load_config(root, db_url))
    for assignment_id in assignment_ids:
        run_nbgrader(grader.generate_assignment(assignment_id, force=True), f"generate_assignment {assignment_id}")


def release(release_dir: Path = RELEASE, source: Path = SOURCE, assignment_ids: list[str] | None = None) -> list[Path]:
    """Regenerate the student notebooks (``release_dir/<NN_name>/``) from the source notebooks.

    Runs in a scratch course with a throw-away gradebook, so a release never touches a real
    gradebook; only ``release_dir/<NN_name>`` folders are replaced. Returns them.
    """
    assignment_ids = assignment_ids or (list(chapters.IDS) if source == SOURCE else assignments(source))
    written = []
    with tempfile.TemporaryDirectory(prefix="autograde-release-") as scratch:
        course = Path(scratch)
        for assignment_id in assignment_ids:
            shutil.copytree(source / assignment_id, course / "solutions" / assignment_id,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        generate(course, assignment_ids)
        for assignment_id in assignment_ids:
            target = Path(release_dir) / assignment_id
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(course / "notebooks" / assignment_id, target)
            written.append(target)
    return written
