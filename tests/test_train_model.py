"""The training network's shape: what the strided stem changes and what it keeps."""

from dataclasses import replace

import numpy as np

from tools import model as train_model

FRAMES, BANDS = 200, 40


def block_outputs(settings: train_model.TrainSettings) -> tuple[dict, object]:
    """Output shapes of the ReLU of every block, and the model."""
    keras_model = train_model.build_model(FRAMES, BANDS, settings)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in keras_model.layers if layer.name.startswith("relu")}
    return shapes, keras_model


def test_strided_stem_hands_the_later_blocks_the_resolution_of_conv_and_pool():
    plain = train_model.TrainSettings(filters=(16, 32, 64, 128))
    plain_shapes, plain_model = block_outputs(plain)
    strided_shapes, strided_model = block_outputs(replace(plain, stem_stride=2))
    assert plain_shapes["relu0"] == (FRAMES, BANDS, 16)
    assert strided_shapes["relu0"] == (FRAMES // 2, BANDS // 2, 16)
    for name in ("relu1", "relu2", "relu3"):
        assert strided_shapes[name] == plain_shapes[name]
    pools = lambda m: [layer.name for layer in m.layers if layer.name.startswith("pool")]
    assert pools(plain_model) == ["pool0", "pool1", "pool2"] and pools(strided_model) == ["pool1", "pool2"]
    assert strided_model.count_params() == plain_model.count_params()
    window = np.random.default_rng(0).standard_normal((1, FRAMES, BANDS, 1)).astype(np.float32)
    assert strided_model(window, training=False).shape == (1, train_model.N_LABELS)
