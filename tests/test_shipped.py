"""The shipped models as package data: found in a checkout and in every install layout, and described by --version.

The layouts are real installs of a wheel (or an editable build) of a copy of this tree, made by pip without
the network or build isolation, each run through its own `serd --version`."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from serd import __version__
from serd.errors import ModelError
from serd.shipped import MODEL_NAME, UNSTATED_LICENCE, ModelInfo, default_model_path, models_folder, shipped_names

PROJECT_DIR = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_DIR / "models"
PACKAGING_FILES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
PACKAGE_DATA = ("*.tflite", "*.json", "*.npz", "MODEL_CARD.md")  # what setup.cfg ships from models/
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
INSTALL = ["install", "--no-deps", "--no-index", "--ignore-installed"]  # --ignore-installed: never replaces this environment's serd
SITE_PACKAGES = Path(sysconfig.get_path("purelib", vars={"base": ""}).lstrip("/"))  # lib/python3.X/site-packages


def shipped_files() -> list[str]:
    """The model files in the source tree's models/ that the package must carry."""
    return sorted({path.name for pattern in PACKAGE_DATA for path in MODELS_DIR.glob(pattern)})


def card_version() -> str:
    return json.loads((MODELS_DIR / ("%s.json" % MODEL_NAME)).read_text())["version"]


def run(command: list, set: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command in an environment without this one's Python path settings (plus `set`); fail the test if it fails."""
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONUSERBASE", "PYTHONNOUSERSITE")}
    env.update(set or {})
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, env=env, timeout=120, check=False, **kwargs)
    assert result.returncode == 0, "%s\n%s" % (command, result.stderr[-2000:])
    return result


def assert_version_output(stdout: str, inside: Path) -> None:
    """serd's version, the shipped model's name and version, and its card inside the installed copy."""
    lines = stdout.splitlines()
    assert lines[0] == "serd %s (code licence: MIT)" % __version__
    assert lines[1] == "model: %s %s" % (MODEL_NAME, card_version())
    assert lines[2].startswith("model licence: ")
    card = Path(lines[3].removeprefix("model card: "))
    assert card.is_file() and card.name == "MODEL_CARD.md"
    assert inside.resolve() in card.resolve().parents, "%s is not inside %s" % (card, inside)


def installed_serd() -> list[tuple[str, str]]:
    """This environment's serd distributions and where they are (none when it runs from the checkout alone)."""
    return sorted((str(dist.locate_file("")), dist.version) for dist in metadata.distributions(name="serd"))


@pytest.fixture(autouse=True, scope="module")
def this_environment_is_left_alone():
    """The installs below go elsewhere; this environment's serd must survive them."""
    before = installed_serd()
    yield
    assert installed_serd() == before


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """A copy of what a build reads (serd/ with its models link, models/, the packaging files), so builds leave this tree alone."""
    copy = tmp_path_factory.mktemp("source") / "serd-src"
    shutil.copytree(PROJECT_DIR / "serd", copy / "serd", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "models").mkdir()
    for name in shipped_files():
        shutil.copy2(MODELS_DIR / name, copy / "models" / name)
    for name in PACKAGING_FILES:
        shutil.copy2(PROJECT_DIR / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    """A wheel of the copy, built offline with this environment's setuptools."""
    out = tmp_path_factory.mktemp("dist")
    run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, source_copy], cwd=source_copy)
    (found,) = out.glob("serd-*.whl")
    return found


def test_checkout_finds_the_shipped_models_through_the_package():
    assert models_folder().resolve() == MODELS_DIR.resolve()
    assert default_model_path().name == "%s.tflite" % MODEL_NAME
    assert MODEL_NAME in shipped_names()


def test_shipped_names_are_the_cards_with_weights():
    expected = sorted(card.stem for card in MODELS_DIR.glob("*.json")
                      if (MODELS_DIR / (card.stem + ".tflite")).is_file() or (MODELS_DIR / (card.stem + ".npz")).is_file())
    assert shipped_names() == expected
    assert "cv_results" not in shipped_names()


def test_unknown_shipped_model_names_the_ones_there_are():
    with pytest.raises(ModelError, match=r"shipped model serd-nothing not found in .*\(shipped: .*%s" % MODEL_NAME):
        default_model_path("serd-nothing")


@pytest.mark.parametrize("key", ["licence", "license"])
def test_model_info_reads_the_card_licence(tmp_path, key):
    card = tmp_path / "m.json"
    card.write_text(json.dumps({"name": "m", "version": "2.0.0", key: "CC BY-NC-SA 4.0"}))
    info = ModelInfo.from_card(card)
    assert (info.name, info.version, info.licence, info.card_path) == ("m", "2.0.0", "CC BY-NC-SA 4.0", tmp_path / "MODEL_CARD.md")


def test_model_info_without_a_licence_points_to_the_model_card(tmp_path):
    card = tmp_path / "m.json"
    card.write_text(json.dumps({"name": "m", "version": "1"}))
    assert ModelInfo.from_card(card).licence == UNSTATED_LICENCE


def test_model_info_of_a_broken_card_is_one_clear_error(tmp_path):
    card = tmp_path / "m.json"
    card.write_text("{not json")
    with pytest.raises(ModelError, match="m.json: model card is not valid JSON"):
        ModelInfo.from_card(card)


def test_version_prints_serd_and_the_shipped_model():
    result = run([sys.executable, "-m", "serd.cli", "--version"])
    assert_version_output(result.stdout, MODELS_DIR)
    licence = json.loads((MODELS_DIR / ("%s.json" % MODEL_NAME)).read_text()).get("licence", UNSTATED_LICENCE)
    assert result.stdout.splitlines()[2] == "model licence: %s" % licence


def test_wheel_carries_the_models_and_their_card(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.removeprefix("serd/models/") for n in names if n.startswith("serd/models/")) == shipped_files()
    assert "MODEL_CARD.md" in shipped_files()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith("share/") or ".data/" in n for n in names), "models must not be data files outside the package"


def test_venv_install_of_the_wheel_finds_the_shipped_model(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    run([*PIP, "--python", venv / "bin" / "python", *INSTALL, wheel])
    assert_version_output(run([venv / "bin" / "serd", "--version"]).stdout, venv)


def test_user_install_of_the_wheel_finds_the_shipped_model(wheel, tmp_path):
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    user_base = {"PYTHONUSERBASE": str(tmp_path / "user")}
    run([*PIP, "--python", base_python, *INSTALL, "--user", wheel], set=user_base)
    assert_version_output(run([tmp_path / "user" / "bin" / "serd", "--version"], set=user_base).stdout, tmp_path / "user")


@pytest.mark.parametrize("layout", ["--prefix", "--target"])
def test_prefix_and_target_installs_of_the_wheel_find_the_shipped_model(wheel, tmp_path, layout):
    root = tmp_path / "root"
    run([*PIP, *INSTALL, layout, root, wheel])
    site = root / SITE_PACKAGES if layout == "--prefix" else root
    result = run([root / "bin" / "serd", "--version"], set={"PYTHONPATH": str(site)})
    assert_version_output(result.stdout, site)


def test_editable_install_finds_the_models_folder_of_its_tree(source_copy, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    run([*PIP, *INSTALL, "--no-build-isolation", "--prefix", venv, "-e", source_copy], cwd=source_copy)
    result = run([venv / "bin" / "python", "-m", "serd.cli", "--version"], cwd=tmp_path)
    assert_version_output(result.stdout, source_copy / "models")


def test_serd_in_a_zip_archive_says_why_it_cannot_open_its_models(source_copy, tmp_path):
    archive = tmp_path / "serd.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((source_copy / "serd").rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(source_copy))
    result = run([sys.executable, "-m", "serd.cli", "--version"], set={"PYTHONPATH": str(archive)}, cwd=tmp_path)
    assert result.stdout.splitlines()[1].startswith("model: none usable (serd runs from an archive")


def test_the_shipped_emotion_card_states_the_study_it_was_chosen_on():
    card = json.loads((MODELS_DIR / "serd-emotion.json").read_text())
    study = json.loads((MODELS_DIR / "loco_results.json").read_text())["recipes"][card["training"]["recipe"]]
    assert card["metrics"]["loco"]["mean"] == study["loco"]["mean"]
    assert card["temperature"] == study["loco"]["calibration"]["temperature"]
    headline = "**Mean UAR restricted %.1f" % (100 * study["loco"]["mean"]["uar_restricted"][0])
    assert headline in (MODELS_DIR / "MODEL_CARD.md").read_text()
