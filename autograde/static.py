"""Lines of a student's code worth a human look, read with ``ast`` in the grader (never run here).

Review flags only: nothing here changes a score or a status. Points come from what the code did
when it ran (``verdicts``); a text scan cannot tell ``getattr(torch, "mean")`` from a trick, so it
says what it saw, neutrally ("uses getattr inside pg_loss"), for the instructor's review table.

Only student-editable cells are read (solution cells and cells the student added); locked cells
are the course's own code, and only tell what names like ``np`` stand for.
"""
from __future__ import annotations

import ast
from dataclasses import asdict, dataclass

PROTECTED_MODULES = {"torch", "numpy", "builtins", "ppo_lab", "sys", "math", "random", "os", "json",
                     "importlib", "nbgrader", "nbclient", "ipykernel", "IPython", "pickle"}
HARMLESS_SETTINGS = ("os.environ", "torch.backends.")  # settings students may change
TEST_HELPERS = {"check", "answer_or_reference"}
# Inside an exercise function these reach code by a name a reader cannot follow at a glance.
DYNAMIC_ACCESS = {"__import__", "import_module", "exec", "eval", "compile", "getattr", "globals", "vars",
                  "reload", "modules", "__dict__", "__builtins__", "__globals__", "__wrapped__", "__code__",
                  "__closure__", "setprofile", "settrace"}
# Calls that change how code runs or reach past the notebook, worth a look wherever they are.
RUNTIME_HOOKS = {"sys.setprofile", "sys.settrace", "threading.setprofile", "threading.settrace", "os.fork",
                 "os.forkpty", "ctypes.memmove", "gc.get_objects", "gc.get_referrers"}
CODE_ATTRIBUTES = {"__code__", "__defaults__", "__kwdefaults__", "__globals__", "__class__"}
GRADER_WORDS = ("PPO_LAB_GRADING", "ppo-lab.record", "RECORD_MIME", "gradebook.db", "read_cases", "write_cases")


@dataclass(frozen=True)
class Review:
    """One line to look at: where it is, the code, and what it does (worded neutrally)."""

    cell: str  # the cell's grade id, or "cell N" for a cell the student added
    line: int
    code: str
    why: str

    def as_text(self) -> str:
        return f"{self.cell}:{self.line}: {self.why}"

    def as_dict(self) -> dict:
        return asdict(self)


def python_source(cell_source: str) -> str:
    """IPython syntax (magics, !shell) as the Python it stands for, so ``ast`` can read it."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def scan(student_cells: list[tuple[str, str]], course_cells: list[str], exercises: set[str]) -> list[Review]:
    """``student_cells``: (label, source) of the code the student could edit; ``course_cells``:
    the locked cells' sources; ``exercises``: the graded function names of the notebook."""
    parsed = [(label, source, _parse(source)) for label, source in student_cells]
    modules = _module_aliases([_parse(source) for source in course_cells] + [tree for _, _, tree in parsed])
    functions = {node.name: node for _, _, tree in parsed for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    watched = _called_from(exercises & set(functions), functions)
    found = []
    for label, source, tree in parsed:
        lines = python_source(source).splitlines()

        def review(node: ast.AST, why: str) -> None:
            code = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
            found.append(Review(label, node.lineno, code[:200], why))

        for function in (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if function.name in watched:
                _inside_exercise(function, modules, review)
        _anywhere(tree, modules, review)
    return sorted(set(found), key=lambda r: (r.cell, r.line, r.why))


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(python_source(source))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])  # it fails when it runs; nothing to read


def _module_aliases(trees: list[ast.Module]) -> dict[str, str]:
    """local name -> module it stands for (``np`` -> ``numpy``, ``F`` -> ``torch.nn.functional``)."""
    aliases = {name: name for name in PROTECTED_MODULES}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST, modules: dict[str, str]) -> str | None:
    """``np.linalg.norm`` -> ``numpy.linalg.norm``; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Subscript):
        return _dotted(node.value, modules)
    if not isinstance(node, ast.Name):
        return None
    return ".".join([modules.get(node.id, node.id), *reversed(parts)])


def _called_from(roots: set[str], functions: dict[str, ast.AST]) -> set[str]:
    """The exercise functions and the student's functions they call, transitively."""
    watched, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in watched:
            continue
        watched.add(name)
        pending += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions]
    return watched


def _inside_exercise(function, modules, review) -> None:
    where = f"inside {function.name}"
    for node in ast.walk(function):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module and module.split(".")[0] in ("ppo_lab", "importlib"):
                review(node, f"imports {module} {where}")
        elif isinstance(node, ast.Name) and node.id in DYNAMIC_ACCESS:
            review(node, f"uses {node.id} {where}")
        elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ACCESS:
            review(node, f"uses .{node.attr} {where}")
        elif isinstance(node, ast.Name) and modules.get(node.id, "").split(".")[0] == "ppo_lab":
            review(node, f"uses {modules[node.id]} {where}")


def _anywhere(tree, modules, review) -> None:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, modules) or ""
            if name in RUNTIME_HOOKS:
                review(node, f"calls {name}")
            if isinstance(node.func, ast.Attribute) and node.func.attr == "register" \
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "events":
                review(node, "registers an IPython event hook")
            if name.split(".")[-1] in ("setattr", "delattr") and node.args and (_protected(node.args[0], modules, True)):
                review(node, f"sets an attribute of {_dotted(node.args[0], modules)}")
            if name.startswith("sys.modules.") or name.endswith("__dict__.update"):
                review(node, f"changes {name.rsplit('.', 1)[0]}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in TEST_HELPERS:
            review(node, f"defines its own {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for word in GRADER_WORDS:
                if word.lower() in node.value.lower():
                    review(node, f"names {word!r}")
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id in TEST_HELPERS and isinstance(sub.ctx, (ast.Store, ast.Del)):
                    review(node, f"rebinds {sub.id}")
            if (where := _protected(target, modules)):
                review(node, f"assigns to {where}")
            elif isinstance(target, ast.Attribute) and target.attr in CODE_ATTRIBUTES:
                review(node, f"replaces {target.attr} of {_dotted(target.value, modules) or 'an object'}")
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Call) \
                    and getattr(target.value.func, "id", None) in ("globals", "vars", "locals"):
                review(node, f"assigns into {target.value.func.id}()")


def _protected(target: ast.AST, modules: dict[str, str], bare: bool = False) -> str | None:
    """The dotted name of an attribute of a protected module that ``target`` writes, if any."""
    if not bare and not isinstance(target, (ast.Attribute, ast.Subscript)):
        return None
    dotted = _dotted(target, modules)
    if dotted and dotted.split(".")[0] in PROTECTED_MODULES and not dotted.startswith(HARMLESS_SETTINGS):
        return dotted
    return None
