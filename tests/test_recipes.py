import pytest

from kocc.experiments.recipes import (
    RecipeError,
    ToyRecipe,
    load_recipe,
    parse_overrides,
)

DEFAULT = "recipes/toy2d_two_moons.yaml"


def test_default_recipe_loads_with_documented_values():
    recipe = load_recipe(DEFAULT)
    assert isinstance(recipe, ToyRecipe)
    assert recipe.data.name == "two_moons"
    assert recipe.domain.kind == "ball" and recipe.domain.radius == 5.0


def test_overrides_are_parsed_as_yaml_scalars_and_applied():
    recipe = load_recipe(
        DEFAULT, ["training.steps=50", "model.widths=[8, 8]", "training.lam=1e2"]
    )
    assert recipe.training.steps == 50
    assert recipe.model.widths == [8, 8]
    assert recipe.training.lam == 100.0


def test_unknown_key_error_names_it_and_lists_the_valid_keys():
    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT, ["training.stepz=5"])
    assert "training.stepz" in str(err.value)
    assert "steps" in str(err.value) and "batch_size" in str(err.value)


def test_unknown_top_level_section_is_rejected(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("kind: toy\nmodle: {}\n")
    with pytest.raises(RecipeError, match="modle"):
        load_recipe(path)


def test_wrong_value_type_is_rejected():
    with pytest.raises(RecipeError, match="training.steps.*integer"):
        load_recipe(DEFAULT, ["training.steps=many"])
    with pytest.raises(RecipeError, match="domain.kind.*one of"):
        load_recipe(DEFAULT, ["domain.kind=sphere"])


def test_missing_recipe_file_is_reported():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("recipes/no_such_recipe.yaml")


def test_unknown_kind_and_bad_yaml_are_reported(tmp_path):
    bad_kind = tmp_path / "k.yaml"
    bad_kind.write_text("kind: spaceship\n")
    with pytest.raises(RecipeError, match="kind"):
        load_recipe(bad_kind)
    bad_yaml = tmp_path / "y.yaml"
    bad_yaml.write_text("kind: [toy\n")
    with pytest.raises(RecipeError, match="YAML"):
        load_recipe(bad_yaml)


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(RecipeError, match="key.sub=value"):
        parse_overrides(["training.steps"])
