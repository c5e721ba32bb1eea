"""The library does not depend on the experiment layer, nor on optional extras."""

import ast
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kocc
from kocc.extras import OPTIONAL_MODULES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kocc"
EXPERIMENTS = PACKAGE / "experiments"

#: Importing the core must not load these (each belongs to an extra).
EXTRA_MODULES = ("yaml", "matplotlib", "trimesh", "foolbox", "tensorflow_datasets")
EXTRA_MODULES += ("skimage",)
CORE_IMPORT = "import kocc, kocc.models, kocc.sampling, kocc.metrics, "
CORE_IMPORT += "kocc.callbacks, kocc.export, kocc.estimator, kocc.training"


def _imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (anywhere in the file)."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}".rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _core_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if EXPERIMENTS not in p.parents]


def test_no_core_module_imports_the_experiment_layer():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in _imported_modules(path)
            if name.startswith("kocc.experiments")
        )
        for path in _core_files()
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"core modules import kocc.experiments: {offenders}"


def test_baselines_do_not_import_the_surfaces_they_are_compared_with():
    offenders = {
        str(path.relative_to(ROOT))
        for path in (PACKAGE / "baselines").glob("*.py")
        if any(n.startswith("kocc.surfaces") for n in _imported_modules(path))
    }
    assert not offenders


def test_import_walk_sees_an_upward_import(tmp_path):
    # the walk itself must catch both import forms, relative ones included
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ..experiments import recipes\n"
        "def f():\n    import kocc.experiments.cli\n"
    )
    names = _imported_modules(probe, package="kocc.datasets")
    assert {"kocc.experiments.recipes", "kocc.experiments.cli"} <= names


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )


def test_core_import_loads_no_optional_package():
    code = (
        f"import sys\n{CORE_IMPORT}\n"
        f"print(sorted(m for m in {list(EXTRA_MODULES)!r} if m in sys.modules))"
    )
    # Keras 3 (installed with TensorFlow, imported by deel-lip) imports
    # matplotlib when it is installed: that is not kocc's import, so the check
    # hides every optional package, as a core-only install would.
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {list(EXTRA_MODULES)!r}:\n"
        "            raise ImportError(f'blocked {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    proc = _python(blocker + code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    # and with everything installed, kocc itself loads none but matplotlib
    proc = _python(code.replace("'matplotlib', ", ""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_toy_training_loads_no_surfaces_package():
    """The demo's path (``kocc train`` on a toy recipe) needs no ``surfaces``
    extra, and does not import it: trimesh catches ``BaseException`` in its
    own imports, so a Ctrl-C during ``import trimesh`` was lost."""
    surfaces = [m for m, (_, extra) in OPTIONAL_MODULES.items() if extra == "surfaces"]
    proc = _python(
        "import sys\nimport kocc.experiments.toy_experiment\n"
        f"print(sorted(m for m in {surfaces!r} if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_baselines_list_their_lazy_names_for_static_analysis():
    import kocc.baselines as baselines

    # the API docs (griffe) and type checkers see __all__ and the
    # TYPE_CHECKING imports; the lazy table must name the same objects
    assert baselines.__all__ == sorted(baselines._EXPORTS)
    for name, module in baselines._EXPORTS.items():
        assert getattr(baselines, name).__module__ == module


def test_top_level_exports_resolve_lazily_to_their_modules():
    proc = _python(
        "import sys, kocc\n"
        "print('kocc.estimator' in sys.modules, 'kocc.export' in sys.modules)\n"
        "from kocc import OneClassSDF, save_for_serving, OCSDF, CertifiedAUROC\n"
        "print(OneClassSDF.__module__, save_for_serving.__module__)\n"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "False False"
    assert lines[-1] == "kocc.estimator kocc.export"
    for name in kocc.__all__:
        assert getattr(kocc, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kocc.nope  # noqa: B018


def _extras() -> dict[str, set[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {
        extra: {
            re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
            for line in value.strip().splitlines()
        }
        for extra, value in config["options.extras_require"].items()
    }


def test_each_optional_module_is_in_its_extra_and_in_all_and_test():
    extras = _extras()
    for module, (distribution, extra) in OPTIONAL_MODULES.items():
        if module == "eagerpy":  # installed by foolbox, imported by kocc.attacks
            distribution = "foolbox"
        for name in (extra, "experiments", "all", "test"):
            assert distribution.lower() in extras[name], (module, name)


def test_core_install_has_only_the_core_requirements():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    required = {
        re.split(r"[<>=!~ ]", line.strip())[0].lower()
        for line in config["options"]["install_requires"].strip().splitlines()
    }
    assert required == {
        "tensorflow",
        "tf-keras",
        "deel-lip",
        "numpy",
        "scipy",
        "scikit-learn",
    }


def test_readme_commands_install_the_extras_they_run():
    commands = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text())
    train, tests = commands[0], commands[1]
    assert "pip install -e '.[experiments]'" in train and "kocc train" in train
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]'", tests)
    assert extras and "test" in extras.group(1).split(",") and "pytest" in tests
    assert "console_scripts" in (ROOT / "setup.cfg").read_text()
    assert "kocc = kocc.experiments.cli:main" in (ROOT / "setup.cfg").read_text()
