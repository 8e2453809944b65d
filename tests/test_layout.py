"""The platform/ source root must never become a package: it would shadow the standard library's module."""

import ast
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_platform_folder_has_no_init_file() -> None:
    assert (ROOT / "platform").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_top_level_layout_is_in_place() -> None:
    for name in ("platform", "royalties", "media", "contracts", "tests", "manage.py", "pyproject.toml"):
        assert (ROOT / name).exists(), name


def test_platform_module_is_the_standard_librarys() -> None:
    import platform

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert Path(platform.__file__).parent == stdlib
    assert platform.python_version().startswith("3.11")


def test_stripe_celery_and_uuid_import_inside_the_django_process() -> None:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.test');"
        "django.setup(); import platform, uuid, stripe, celery; from config import celery_app;"
        "print(platform.python_version(), uuid.uuid4().version, celery_app.main, bool(stripe.VERSION))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    version, uuid_version, app_name, has_stripe = result.stdout.split()
    assert version.startswith("3.11")
    assert (uuid_version, app_name, has_stripe) == ("4", "tribute", "True")


# No module imports another module's private names ------------------------------------------------------

SCANNED = ("platform", "media", "royalties", "contracts")
SOURCE_ROOTS = (ROOT / "platform", ROOT)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT / "platform" if path.is_relative_to(ROOT / "platform") else ROOT)
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_ours(dotted: str) -> bool:
    """Whether `dotted` names one of our modules (third-party libraries decide their own privacy: lxml's
    element class is `_Element`)."""
    relative = Path(*dotted.split("."))
    return any(
        (root / relative).with_suffix(".py").is_file() or (root / relative / "__init__.py").is_file()
        for root in SOURCE_ROOTS
    )


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    modules: set[str] = set()  # local names bound to modules by `import`
    imported: dict[str, str] = {}  # local name -> what `from x import y` named: a module or not
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_ours(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                if _is_private(alias.name) and _is_ours(source):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {alias.name}")
                else:
                    imported[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            value = node.value
            while isinstance(value, ast.Attribute):
                value = value.value
            if isinstance(value, ast.Name) and (
                value.id in modules or (value.id in imported and _is_ours(imported[value.id]))
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" in path.parts or "node_modules" in path.parts:
                continue
            found += _private_imports(path)
    assert found == []
