"""The recipe reference pages (docs/recipes/<kind>.md) rendered from the schema."""

import dataclasses

import pytest

from kocc.experiments.recipe_reference import describe, field_comments, render_page
from kocc.experiments.recipes import KINDS, ToyRecipe, TrainingConfig, from_dict, schema


def _leaf_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict) and value:
            keys |= _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_toy_page_lists_learning_rate_with_type_default_rule_and_meaning():
    page = render_page("toy")
    row = next(line for line in page.splitlines() if "`training.learning_rate`" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "`training.learning_rate`",
        "`float`",
        f"`{TrainingConfig().learning_rate!r}`",
        "a finite number > 0",
        "the optimizer's (initial) learning rate",
    ]
    assert "Run with `kocc train`" in page
    assert "## `training`" in page


def test_toy_page_lists_exactly_the_keys_the_loader_builds():
    documented = {row.key for row in describe(ToyRecipe)}
    built = _leaf_keys(dataclasses.asdict(from_dict(ToyRecipe, {"kind": "toy"})))
    assert documented == built


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_page_with_a_row_per_key(kind):
    page = render_page(kind)
    for row in describe(schema(kind)):
        assert f"| `{row.key}` |" in page


def test_choices_and_nullable_types_are_rendered():
    rows = {row.key: row for row in describe(ToyRecipe)}
    assert rows["training.optimizer"].rule == "one of ['rmsprop', 'adam', 'sgd']"
    assert rows["training.final_learning_rate"].type == "float | None"
    assert rows["training.final_learning_rate"].default == "null"
    assert rows["training.allow_long_runs"].default == "false"


def test_field_comments_are_read_from_hash_colon_lines_above_a_field():
    @dataclasses.dataclass
    class Section:
        #: first line
        #: second line
        documented: int = 1
        plain: int = 2  # an ordinary comment is not a meaning

    assert field_comments(Section) == {"documented": "first line second line"}
