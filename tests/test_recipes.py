from pathlib import Path

import pytest

from kocc.experiments.recipes import (
    COMMANDS,
    SCHEMAS,
    RecipeError,
    ToyRecipe,
    load_recipe,
    parse_overrides,
    schema,
)

DEFAULT = "recipes/toy2d_two_moons.yaml"


def test_default_recipe_loads_with_documented_values():
    recipe = load_recipe(DEFAULT)
    assert isinstance(recipe, ToyRecipe)
    assert recipe.data.name == "two_moons"
    assert recipe.model.widths == [128, 128, 128]
    assert recipe.domain.kind == "ball" and recipe.domain.radius == 3.0
    assert recipe.training.learning_rate == 3e-3
    assert recipe.training.final_learning_rate == 1e-4


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


@pytest.mark.parametrize(
    "text, named",
    [
        ("kind: toy\nmodle: {}\n", "modle"),  # unknown top-level section
        ("kind: spaceship\n", "kind"),  # unknown kind
        ("kind: [toy\n", "YAML"),  # bad YAML
    ],
    ids=["unknown-section", "unknown-kind", "bad-yaml"],
)
def test_bad_recipe_file_is_rejected_naming_the_problem(tmp_path, text, named):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=named):
        load_recipe(path)


def test_wrong_value_type_is_rejected():
    with pytest.raises(RecipeError, match="training.steps.*integer"):
        load_recipe(DEFAULT, ["training.steps=many"])
    with pytest.raises(RecipeError, match="domain.kind.*one of"):
        load_recipe(DEFAULT, ["domain.kind=sphere"])


def test_missing_recipe_file_is_reported():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("recipes/no_such_recipe.yaml")


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(RecipeError, match="key.sub=value"):
        parse_overrides(["training.steps"])


# ------------------------------------------------- one schema for every kind
RECIPES = sorted(Path(__file__).resolve().parents[1].glob("recipes/*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_through_the_one_loader(path):
    recipe = load_recipe(path)
    assert recipe.kind in SCHEMAS
    assert type(recipe) is schema(recipe.kind)


@pytest.mark.parametrize(
    ("override", "key", "expected", "given"),
    [
        ("training.learning_rate=-1", "training.learning_rate", "> 0", -1.0),
        ("training.learning_rate=.nan", "training.learning_rate", "finite", "nan"),
        ("training.margin=.inf", "training.margin", "finite", "inf"),
        ("training.steps=10000001", "training.steps", "at most 1e+07", 10000001),
        ("training.epochs=3000", "training.epochs", "at most training.steps", 3000),
        ("data.n_train=1", "data.n_train", ">= 2", 1),
        ("data.n_train=100", "data.n_train", "at least one batch", 100),
        ("evaluation.grid_size=0", "evaluation.grid_size", ">= 2", 0),
        ("model.widths=[8, 0]", "model.widths[1]", ">= 1", 0),
        ("model.activation=relu", "model.activation", "groupsort", "relu"),
        ("domain.high=-6", "domain.high", "> domain.low", -6.0),
    ],
)
def test_out_of_range_values_are_refused_before_training(
    override, key, expected, given
):
    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT, [override])
    assert err.value.key == key
    assert expected in err.value.expected
    assert str(err.value.given) == str(given)
    assert str(err.value).startswith(f"recipe key {key!r}: expected ")


def test_long_runs_need_an_explicit_opt_in():
    recipe = load_recipe(
        DEFAULT, ["training.steps=20000000", "training.allow_long_runs=true"]
    )
    assert recipe.training.steps == 20_000_000


def test_unknown_key_error_carries_the_valid_keys():
    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT, ["training.stepz=5"])
    assert err.value.key == "training.stepz"
    assert "learning_rate" in err.value.valid
    assert "valid keys in training:" in str(err.value)


def test_surface_resolution_is_validated_by_the_same_mechanism():
    with pytest.raises(RecipeError, match=r"'extraction.resolution': expected an "):
        load_recipe("recipes/surface_modelnet.yaml", ["extraction.resolution=1"])


def test_every_kind_shares_the_optimizer_choices_and_description():
    for path in ("recipes/tabular_odds.yaml", "recipes/mnist_one_class_cpu.yaml"):
        recipe = load_recipe(path, ["training.optimizer=sgd", "description=x"])
        assert recipe.training.optimizer == "sgd"
    with pytest.raises(RecipeError, match="'training.optimizer': expected one of"):
        load_recipe("recipes/surface_modelnet.yaml", ["training.optimizer=adamw"])


def test_a_command_refuses_kinds_it_does_not_run_and_names_the_one_that_does():
    with pytest.raises(RecipeError) as err:
        load_recipe("recipes/tabular_odds.yaml", kinds=("toy",), command="kocc train")
    assert err.value.key == "kind"
    assert "kocc train runs (toy)" in str(err.value)
    assert "runs with kocc benchmark" in str(err.value)
    assert set(COMMANDS) == set(SCHEMAS)
