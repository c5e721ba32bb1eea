"""The recipe reference: one Markdown page per recipe kind, from the schema.

Every key of a recipe kind (its dotted path), its type, default, rule or
choices, and its meaning, read from the one schema of :mod:`kocc.experiments.recipes`:
the dataclass fields, their ``metadata=rule(...)``, the ``#:`` comment above a
field and each section's docstring. The docs build renders these pages
(``docs/tooling/gen_recipe_pages.py``), so the reference cannot drift from
what ``load_recipe`` accepts.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from kocc.experiments.recipes import COMMANDS, KINDS, schema

_COMMENT = re.compile(r"^\s*#:\s?(.*)$")
_FIELD = re.compile(r"^\s*([A-Za-z_]\w*)\s*:")
_ROLE = re.compile(r":(?:mod|func|class|data|meth|attr|obj):`~?([^`]+)`")


@dataclass(frozen=True)
class KeyDoc:
    """One recipe key as the reference lists it."""

    key: str
    type: str
    default: str
    rule: str
    meaning: str


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comments written above the fields of ``cls`` (own source only)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        match = _COMMENT.match(line)
        if match:
            pending.append(match.group(1).strip())
            continue
        field = _FIELD.match(line)
        if field and pending:
            comments[field.group(1)] = " ".join(pending)
        pending = []
    return comments


def _all_comments(cls: type) -> dict[str, str]:
    comments: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            comments.update(field_comments(base))
    return comments


def type_name(tp: Any) -> str:
    """A type annotation as a recipe writer reads it (``list[int] | None``)."""
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return " | ".join(type_name(a) for a in args)
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def _default(spec: dataclasses.Field) -> str:
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def describe(cls: type, prefix: str = "") -> list[KeyDoc]:
    """Every leaf key of the schema ``cls``, sections expanded in field order."""
    hints = typing.get_type_hints(cls)
    comments = _all_comments(cls)
    rows: list[KeyDoc] = []
    for spec in dataclasses.fields(cls):
        if spec.metadata.get("derived"):
            continue
        tp = hints[spec.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, f"{prefix}{spec.name}."))
            continue
        rule = spec.metadata.get("rule")
        rows.append(
            KeyDoc(
                key=prefix + spec.name,
                type=type_name(tp),
                default=_default(spec),
                rule=rule.expected if rule is not None else "",
                meaning=comments.get(spec.name, ""),
            )
        )
    return rows


def sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    """``(dotted path, dataclass)`` of the schema and of each nested section."""
    found = [(prefix.rstrip("."), cls)]
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        tp = hints[spec.name]
        if dataclasses.is_dataclass(tp) and not spec.metadata.get("derived"):
            found.extend(sections(tp, f"{prefix}{spec.name}."))
    return found


def _plain(text: str) -> str:
    """Sphinx roles (``:mod:`x` ``) as Markdown code."""
    return _ROLE.sub(r"`\1`", text)


def _cell(text: str) -> str:
    text = _plain(text)
    return text.replace("|", "\\|").replace("\n", " ") if text else ""


def _doc(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    # a dataclass without a docstring gets its generated signature: not a meaning
    return "" if doc.startswith(cls.__name__ + "(") else _plain(doc)


def render_page(kind: str) -> str:
    """The Markdown reference page of recipe ``kind``."""
    cls = schema(kind)
    out = [f"# Recipe kind `{kind}`", ""]
    out += [f"Run with `{COMMANDS[kind]}`. Schema: `{cls.__module__}.{cls.__name__}`."]
    out += ["", _doc(cls), ""]
    out += [
        "Every key below can be set in the YAML file or on the command line "
        "with `--set key=value` (see [Training](../training.md)); an unknown "
        "key or a value outside its rule is an error naming the key.",
        "",
    ]
    rows_by_section: dict[str, list[KeyDoc]] = {}
    for row in describe(cls):
        rows_by_section.setdefault(row.key.rpartition(".")[0], []).append(row)
    for path, section in sections(cls):
        rows = rows_by_section.get(path, [])
        if not rows:
            continue
        if path:
            out += [f"## `{path}`", ""]
            if _doc(section):
                out += [_doc(section), ""]
        out += ["| Key | Type | Default | Rule | Meaning |", "|---|---|---|---|---|"]
        for row in rows:
            out.append(
                f"| `{row.key}` | `{_cell(row.type)}` | `{_cell(row.default)}` | "
                f"{_cell(row.rule)} | {_cell(row.meaning)} |"
            )
        out.append("")
    return "\n".join(out)


def kinds() -> list[str]:
    """The recipe kinds, in the order of :data:`~kocc.experiments.recipes.KINDS`."""
    return list(KINDS)
