"""The models shipped inside the package: where they are, and their name, version and licence.

They are package data of serd (serd/models, a link to the source tree's models/ folder that training
writes), found through importlib.resources, so a checkout, an editable install, a wheel, --user, a
prefix and a --target install all find them in the same place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from serd.errors import ModelError

PACKAGE = "serd"
MODELS_FOLDER = "models"
MODEL_NAME = "serd-emotion"
MODEL_SUFFIXES = (".tflite", ".npz")  # a card's weights: TFLite, or the whisper backend's head
MODEL_CARD_FILE = "MODEL_CARD.md"
LICENCE_KEYS = ("licence", "license")  # the card's JSON key, then its American spelling
UNSTATED_LICENCE = "not stated in the model's card; see %s" % MODEL_CARD_FILE


def models_folder() -> Path:
    """The folder holding the shipped models; ModelError if serd runs from an archive."""
    folder = resources.files(PACKAGE).joinpath(MODELS_FOLDER)
    if not isinstance(folder, Path):
        raise ModelError("serd runs from an archive (%s), so its shipped models cannot be opened; "
                         "install it with pip or set [model] path" % folder)
    return folder


def shipped_names() -> list[str]:
    """Names of the shipped models: every card with its weights beside it."""
    folder = models_folder()
    return sorted(card.stem for card in folder.glob("*.json") if _weights(folder, card.stem) is not None)


def default_model_path(name: str = MODEL_NAME) -> Path:
    """The weights of a shipped model by name (serd-emotion, serd-whisper)."""
    folder = models_folder()
    found = _weights(folder, name)
    if found is None:
        present = ", ".join(shipped_names()) or "none"
        raise ModelError("shipped model %s not found in %s (shipped: %s); set [model] path" % (name, folder, present))
    return found


def _weights(folder: Path, name: str) -> Path | None:
    """folder/name.tflite or folder/name.npz, whichever exists first."""
    for suffix in MODEL_SUFFIXES:
        if (folder / (name + suffix)).is_file():
            return folder / (name + suffix)
    return None


def read_card(card_path: Path) -> dict:
    """A model's JSON card as a dict; ModelError names the file and what is wrong."""
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError("%s: cannot read model card: %s" % (card_path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ModelError("%s: model card is not valid JSON: %s" % (card_path, exc)) from None
    if not isinstance(data, dict):
        raise ModelError("%s: model card is not a JSON object" % card_path)
    return data


@dataclass(frozen=True)
class ModelInfo:
    """What `serd --version` says about a shipped model."""

    name: str
    version: str
    licence: str
    card_path: Path  # the human-readable model card (MODEL_CARD.md), which has the licence in full

    @classmethod
    def from_card(cls, card_path: Path) -> "ModelInfo":
        """Name, version and licence from a JSON card; ModelError if it cannot be read."""
        data = read_card(card_path)
        licence = next((str(data[key]) for key in LICENCE_KEYS if data.get(key)), UNSTATED_LICENCE)
        return cls(str(data.get("name", card_path.stem)), str(data.get("version", "0")), licence, card_path.parent / MODEL_CARD_FILE)


def version_lines(name: str = MODEL_NAME) -> list[str]:
    """The shipped model's name, version, licence and card, or the one-line reason it cannot be described."""
    try:
        info = ModelInfo.from_card(default_model_path(name).with_suffix(".json"))
    except ModelError as exc:
        return ["model: none usable (%s)" % exc]
    card = info.card_path if info.card_path.is_file() else "%s (missing)" % info.card_path
    return ["model: %s %s" % (info.name, info.version), "model licence: %s" % info.licence, "model card: %s" % card]
