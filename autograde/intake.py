"""Intake: what a submissions folder or zip holds, checked against nbgrader's submitted layout
``<student_id>/<chapter>/<notebook>.ipynb`` before anything is written to ``--out``.

Everything out of that layout is named with the layout it should have: a notebook at the top or
directly in a student folder, a chapter-first tree, a folder that is no chapter of the course, a
student id that cannot be one. A bad zip is one line. Nothing here writes, except ``materialize``
(after intake succeeded).
"""
from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .course import CourseError
LAYOUT = "<student_id>/<chapter>/<notebook>.ipynb"
IGNORED = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
MAX_ZIP_BYTES = 2_000_000_000
TABLE_ROWS = 40  # a MOOC's table is summarised after this many students


class IntakeError(CourseError):
    """The submissions cannot be read, or are not in the expected layout (exit code 2)."""


@dataclass
class Intake:
    source: Path  # the folder or zip given
    chapters: list[str]  # the chapters being graded
    prefix: str = ""  # one top folder holding the students (a zip of a folder), stripped
    found: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # student -> chapter -> file names
    errors: list[str] = field(default_factory=list)  # out of layout: fatal unless --allow-partial
    warnings: list[str] = field(default_factory=list)  # stray files, ignored

    @property
    def students(self) -> list[str]:
        return sorted(self.found)

    def notebooks(self, student: str, chapter: str) -> list[str]:
        return [name for name in self.found.get(student, {}).get(chapter, []) if name.endswith(".ipynb")]

    def table(self) -> str:
        """Students x chapters: ✓ where a notebook was found, - where none."""
        width = max([len("submitted")] + [len(s) for s in self.students])
        lines = [f"{'student':<{width}}  " + "  ".join(self.chapters)]
        for student in self.students[:TABLE_ROWS]:
            cells = [("✓" if self.notebooks(student, c) else "-").ljust(len(c)) for c in self.chapters]
            lines.append(f"{student:<{width}}  " + "  ".join(cells))
        if len(self.students) > TABLE_ROWS:
            lines.append(f"... and {len(self.students) - TABLE_ROWS} more students")
        counts = [str(sum(bool(self.notebooks(s, c)) for s in self.students)).ljust(len(c)) for c in self.chapters]
        lines.append(f"{'submitted':<{width}}  " + "  ".join(counts) + f"  (of {len(self.students)} students)")
        return "\n".join(lines)

    def check(self, allow_partial: bool) -> None:
        """Raise unless the whole intake is in layout (or ``allow_partial``: what is out of it is skipped)."""
        if self.errors and not allow_partial:
            raise IntakeError(f"{self.source} is not in the expected layout {LAYOUT}:\n  - " +
                              "\n  - ".join(self.errors) +
                              "\nFix the layout, or pass --allow-partial to grade what is in it and skip the rest.")
        if not self.found:
            raise IntakeError(f"no student submissions in {self.source}: expected {LAYOUT}")

    def materialize(self, into: Path) -> Path:
        """The folder holding ``<student>/<chapter>/``: the given folder itself, or the zip's files
        that intake accepted, extracted into ``into``."""
        if self.source.is_dir():
            return self.source / self.prefix if self.prefix else self.source
        with zipfile.ZipFile(self.source) as archive:
            for student, chapters in self.found.items():
                for chapter, names in chapters.items():
                    for name in names:
                        member = "/".join(p for p in (self.prefix, student, chapter, name) if p)
                        target = into / student / chapter / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(member) as source, open(target, "wb") as sink:
                            sink.write(source.read())
        return into


def scan(source: Path, known: list[str], chapters: list[str]) -> Intake:
    """Read ``source`` (folder or zip) against the layout; ``known``: every chapter of the course,
    ``chapters``: the ones graded (a known chapter not graded is passed over silently)."""
    if not source.exists():
        raise IntakeError(f"{source} does not exist")
    intake = Intake(source, chapters)
    paths = _folder_files(source) if source.is_dir() else _zip_files(source, intake)
    paths = [p for p in paths if not any(part in IGNORED or part.startswith(".") for part in p.parts)]
    intake.prefix = _common_prefix(paths, known)
    where = f"{intake.prefix}/" if intake.prefix else ""
    bad_folders: set[str] = set()
    for path in paths:
        parts = path.parts[1:] if intake.prefix else path.parts
        shown = where + "/".join(parts)
        notebook = parts[-1].endswith(".ipynb")
        if len(parts) == 1:
            (intake.errors if notebook else intake.warnings).append(
                f"{shown} is at the top level: expected {LAYOUT}" + ("" if notebook else " (ignored)"))
            continue
        student, rest = parts[0], parts[1:]
        if student in known:
            if student not in bad_folders:
                bad_folders.add(student)
                intake.errors.append(f"{where}{student}/ is a chapter name where a student id is expected: the "
                                     f"tree looks chapter-first (<chapter>/<student_id>/...); expected {LAYOUT}")
            continue
        if not STUDENT_ID.match(student):
            if student not in bad_folders:
                bad_folders.add(student)
                intake.errors.append(f"{where}{student}/: {student!r} cannot be a student id (letters, digits and "
                                     "_ . @ + - only, starting with a letter or digit, as nbgrader and JupyterHub "
                                     "usernames): rename the folder to the student's login")
            continue
        chapters_found = intake.found.setdefault(student, {})
        if len(rest) == 1:
            hint = f"{student}/{Path(rest[0]).stem}/{rest[0]}" if Path(rest[0]).stem in known else \
                f"{student}/<chapter>/{rest[0]}"
            (intake.errors if notebook else intake.warnings).append(
                f"{shown} lies directly in the student folder: expected {hint}" + ("" if notebook else " (ignored)"))
            continue
        chapter = rest[0]
        if chapter not in known:
            (intake.errors if notebook else intake.warnings).append(
                f"{shown}: {chapter!r} is not a chapter of this course ({', '.join(known)}); expected {LAYOUT}" +
                ("" if notebook else " (ignored)"))
            continue
        if chapter not in chapters:
            continue
        if notebook and len(rest) > 2:  # nbgrader reads only the chapter folder's own notebooks
            intake.errors.append(f"{shown} is in a subfolder of the chapter: expected {student}/{chapter}/{rest[-1]}")
            continue
        chapters_found.setdefault(chapter, []).append("/".join(rest[1:]))
    if source.is_dir():  # an empty student folder: a student who submitted nothing
        for folder in sorted((source / intake.prefix).iterdir()):
            if folder.is_dir() and not any(folder.iterdir()) and folder.name not in known \
                    and STUDENT_ID.match(folder.name):
                intake.found.setdefault(folder.name, {})
    return intake


def _folder_files(folder: Path) -> list[PurePosixPath]:
    paths = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED and not d.startswith("."))
        paths += [PurePosixPath(Path(parent, f).relative_to(folder).as_posix()) for f in sorted(files)]
    return paths


def _zip_files(archive_path: Path, intake: Intake) -> list[PurePosixPath]:
    """The zip's file names, after checking every member reads back (CRC): one line if not."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise IntakeError(f"cannot read {archive_path}: it unpacks to more than {MAX_ZIP_BYTES // 10**9} GB")
            broken = archive.testzip()
    except IntakeError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError) as error:
        raise IntakeError(f"cannot read {archive_path}: not a readable zip file ({error})") from None
    if broken is not None:
        raise IntakeError(f"cannot read {archive_path}: {broken} is damaged in the zip (bad CRC); download it again")
    paths = []
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts:
            intake.warnings.append(f"{member.filename} points outside the archive (ignored)")
            continue
        paths.append(path)
    return paths


def _common_prefix(paths: list[PurePosixPath], known: list[str]) -> str:
    """A single top folder (the zip of a folder) whose subfolders are students with chapters."""
    tops = {p.parts[0] for p in paths}
    if len(tops) != 1 or any(len(p.parts) < 3 for p in paths):
        return ""
    top = tops.pop()
    looks_like_students = any(len(p.parts) >= 4 and p.parts[2] in known for p in paths)
    return top if looks_like_students and top not in known else ""
