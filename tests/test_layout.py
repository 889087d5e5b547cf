"""The folders are the architecture: each package imports only the layers below it, no
module imports a script or tests/, and there are no import cycles (README, "Layout")."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lowest first. A module may import its own layer and the layers before it.
LAYERS = ["tools.runtime", "tools.errors", "tools.files", "tools.device", "config", "model",
          "tools.data", "tools.weights", "tools.inference", "tools.evaluation", "tools.training",
          "tools.deploy", "tools.dev"]
SCRIPTS = {"demo", "train", "eval", "test_dev", "tools.export_model", "tools.benchmark",
           "tools.benchmark_pipeline", "tools.benchmark_train", "tools.make_synthetic_coco",
           "tools.plot_metrics"}


def library_modules():
    """{dotted name: path} of every module under config/, model/ and tools/ packages."""
    found = {}
    for top in ("config", "model", "tools"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                dotted = dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted
                if dotted not in SCRIPTS:
                    found[dotted] = path
    return found


def imports_of(dotted, path):
    """Every repo-absolute module name ``path`` imports, at any depth of the file."""
    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def layer_of(name):
    matches = [i for i, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + ".")]
    return matches[-1] if matches else None


def test_every_library_module_belongs_to_a_layer():
    assert all(layer_of(name) is not None or name == "tools" for name in library_modules())


def test_no_module_imports_a_higher_layer_a_script_or_tests():
    modules = library_modules()
    problems = []
    for name, path in modules.items():
        own = layer_of(name)
        for imported in imports_of(name, path):
            if imported in SCRIPTS or imported.split(".")[0] == "tests":
                problems.append(f"{name} imports {imported}")
            target = layer_of(imported)
            if own is not None and target is not None and target > own:
                problems.append(f"{name} ({LAYERS[own]}) imports {imported} ({LAYERS[target]})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    modules = library_modules()
    graph = {name: {i for i in imports_of(name, path) if i in modules and i != name}
             for name, path in modules.items()}
    # A package's __init__ imported by its own modules is Python's doing, not a cycle.
    graph = {name: {i for i in deps if not name.startswith(i + ".")}
             for name, deps in graph.items()}
    state, cycles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
