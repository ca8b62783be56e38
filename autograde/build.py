"""The grading build of ppo_lab: what a student's kernel gets instead of the real package.

For one assignment the build is a copy of ppo_lab in which

* every reference of an exercise graded in that assignment is replaced by a delegate to the
  student's own function of that name (``ppo_lab.checks.student.student_answer``): course code
  that calls it (a trainer, a demo) runs the student's answer, and nothing in the box computes
  the right one;
* module-level private helpers that only those references used are dropped with them;
* ``ppo_lab.checks`` keeps only its kernel side (``protocol.KERNEL_SIDE``): no registry, no
  references of the derivation exercises, no mistake catalogue (its "one switch wrong" versions
  are right with every switch off), no judge.

The sandbox mounts the build where ppo_lab is installed, inside a filesystem that holds nothing
else of the course (``execute.Box``), so the real package cannot be read either.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import ppo_lab
from ppo_lab.checks.protocol import KERNEL_SIDE

PACKAGE = Path(ppo_lab.__file__).resolve().parent
DELEGATE_IMPORT = "from ppo_lab.checks.student import student_answer as _student_answer"


def references(check_ids: set[str]) -> dict[str, set[str]]:
    """module name (``ppo_lab.exercises.gae``) -> names of the graded references defined there."""
    from ppo_lab.checks import get

    found: dict[str, set[str]] = {}
    for check_id in check_ids:
        reference = get(check_id).reference
        if reference is not None and not reference.__module__.startswith("ppo_lab.checks"):
            found.setdefault(reference.__module__, set()).add(reference.__name__)
    return found


def build(destination: Path, check_ids: set[str]) -> Path:
    """Write the build for an assignment whose test cells call ``check_ids``; returns the package dir."""
    target = destination / "ppo_lab"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in (target / "checks").iterdir():
        if path.stem not in KERNEL_SIDE:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for module, names in references(check_ids).items():
        path = target.joinpath(*module.split(".")[1:]).with_suffix(".py")
        path.write_text(without(path.read_text(), names))
    return target


def without(source: str, names: set[str]) -> str:
    """``source`` with the top-level functions ``names`` replaced by delegates to the student's,
    and the private top-level functions nothing uses any more removed."""
    tree = ast.parse(source)
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            body.append(ast.parse(f"{node.name} = _student_answer({node.name!r})").body[0])
        else:
            body.append(node)
    while True:  # drop private helpers until none is left unused
        used = {n.id for node in body for n in ast.walk(node) if isinstance(n, ast.Name)} | \
               {n.attr for node in body for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        unused = [node for node in body if isinstance(node, ast.FunctionDef) and node.name.startswith("_")
                  and node.name not in used]
        if not unused:
            break
        body = [node for node in body if node not in unused]
    # The docstring stays first (course code reads it), then __future__ imports, then the delegate import.
    first = [node for node in body[:1] if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)]
    first += [node for node in body if isinstance(node, ast.ImportFrom) and node.module == "__future__"]
    tree.body = [*first, ast.parse(DELEGATE_IMPORT).body[0], *(node for node in body if node not in first)]
    return ast.unparse(tree) + "\n"
