"""The training network's shape: what the half-resolution stems change and what they keep."""

from dataclasses import replace

import numpy as np
import pytest

from tools.model import nn as train_model

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


def test_space_to_depth_stem_stacks_each_2x2_block_as_channels_and_keeps_the_later_blocks():
    plain = train_model.TrainSettings(filters=(16, 32, 64, 128))
    plain_shapes, plain_model = block_outputs(plain)
    stacked_shapes, stacked_model = block_outputs(replace(plain, space_to_depth=True))
    assert stacked_shapes["relu0"] == (FRAMES // 2, BANDS // 2, 16)
    for name in ("relu1", "relu2", "relu3"):
        assert stacked_shapes[name] == plain_shapes[name]
    assert stacked_model.count_params() == plain_model.count_params() + 3 * 9 * 16  # conv0 sees 4 channels, not 1
    window = np.arange(FRAMES * BANDS, dtype=np.float32).reshape(1, FRAMES, BANDS, 1)
    blocks = stacked_model.get_layer("space_to_depth").output
    probe = type(stacked_model)(stacked_model.input, blocks)
    cells = np.asarray(probe(window))
    assert cells.shape == (1, FRAMES // 2, BANDS // 2, 4)
    frame, band = 7, 11  # block (7, 11) holds input cells (14, 22), (14, 23), (15, 22), (15, 23) in that order
    assert cells[0, frame, band].tolist() == [window[0, 2 * frame + a, 2 * band + b, 0] for a in (0, 1) for b in (0, 1)]


def test_space_to_depth_stem_refuses_an_odd_window():
    with pytest.raises(ValueError, match="even window"):
        train_model.build_model(FRAMES + 1, BANDS, train_model.TrainSettings(space_to_depth=True))


def test_separable_blocks_factorise_every_convolution_after_the_first():
    plain = train_model.TrainSettings(filters=(16, 48, 96))
    plain_shapes, plain_model = block_outputs(plain)
    separable_shapes, separable_model = block_outputs(replace(plain, separable=True))
    for name in ("relu0", "relu1", "relu2"):
        assert separable_shapes[name] == plain_shapes[name]
    kernels = lambda m: {layer.name: tuple(layer.kernel.shape) for layer in m.layers if layer.name.startswith(("conv", "depthwise"))
                         and hasattr(layer, "kernel")}
    assert kernels(separable_model) == {"conv0": (3, 3, 1, 16), "depthwise1": (3, 3, 16, 1), "conv1": (1, 1, 16, 48),
                                        "depthwise2": (3, 3, 48, 1), "conv2": (1, 1, 48, 96)}
    assert kernels(plain_model)["conv2"] == (3, 3, 48, 96)
    window = np.random.default_rng(0).standard_normal((1, FRAMES, BANDS, 1)).astype(np.float32)
    assert separable_model(window, training=False).shape == (1, train_model.N_LABELS)


def test_a_corpus_adversary_trains_beside_the_emotion_head_and_leaves_the_plain_network(tmp_path):
    from tools.model import nn
    from tools.model.data import WindowSet

    rng = np.random.default_rng(0)
    n_clips, frames, bands = 24, 40, 40
    windows = rng.normal(size=(n_clips * 2, frames, bands)).astype(np.float32)
    versions = [WindowSet(windows, np.repeat(np.arange(n_clips), 2))]
    labels = np.arange(n_clips) % 3
    corpus = (np.arange(n_clips) // 12).astype(np.int64)
    mask = np.ones((n_clips, nn.N_LABELS), np.float32)
    settings = nn.TrainSettings(epochs=2, filters=(4, 8), batch_size=8, corpus_adversary=0.5)
    with pytest.raises(ValueError, match="needs each clip's corpus"):
        nn.train_drawn(versions, labels, mask, np.full(n_clips, 1 / n_clips), settings, 16)
    model, history = nn.train_drawn(versions, labels, mask, np.full(n_clips, 1 / n_clips), settings, 16, corpus)
    assert len(model.outputs) == 1 and model.outputs[0].shape[-1] == nn.N_LABELS, "the emotion network alone is returned"
    assert any("corpus" in key for key in history), "the corpus classifier was trained"
    model.save_weights(tmp_path / "w.weights.h5")
    plain = nn.build_model(frames, bands, settings)
    plain.load_weights(tmp_path / "w.weights.h5")
    assert np.allclose(nn.predict_logits(plain, windows[:4]), nn.predict_logits(model, windows[:4]), atol=1e-5)


def test_the_gradient_reversal_passes_values_and_turns_gradients_back_scaled_by_its_strength():
    from tools.model import nn

    tf = nn.tf_setup(1)
    _, reversal = nn.adversarial_model(tf, nn.build_model(40, 40, nn.TrainSettings(filters=(4, 8))), 3)
    reversal.strength.assign(0.5)
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = reversal(x)
        total = tf.reduce_sum(3.0 * y)
    assert np.array_equal(y.numpy(), x.numpy()) and np.allclose(tape.gradient(total, x).numpy(), -1.5)


def test_the_adversary_ramps_from_nothing_to_its_strength():
    from tools.model import nn

    ramp = [nn.adversary_strength(0.5, epoch, 40) for epoch in range(40)]
    assert ramp[0] == 0.0 and 0.49 < ramp[-1] <= 0.5 and all(a < b for a, b in zip(ramp, ramp[1:]))


def test_the_alternating_adversary_learns_to_see_the_corpora_during_its_warm_up_and_then_leaves_the_plain_network(tmp_path):
    from tools.model import nn
    from tools.model.data import WindowSet

    rng = np.random.default_rng(0)
    n_clips, frames, bands = 32, 24, 24
    corpus = (np.arange(n_clips) % 2).astype(np.int64)
    windows = rng.normal(size=(n_clips, frames, bands)).astype(np.float32)
    windows[corpus == 1, :, :8] += 3.0  # the second corpus is louder in its low bands: trivially told apart
    versions = [WindowSet(windows, np.arange(n_clips))]
    labels = np.arange(n_clips) // 2 % 3
    mask = np.ones((n_clips, nn.N_LABELS), np.float32)
    settings = nn.TrainSettings(epochs=6, filters=(4, 8), batch_size=8, corpus_adversary=1.0, adversary_warmup=0.5,
                                adversary_lr=1e-2)
    model, history = nn.train_drawn(versions, labels, mask, np.full(n_clips, 1 / n_clips), settings, 64, corpus)
    assert history["adversary_strength"][:4] == [0.0] * 4 and 0.0 < history["adversary_strength"][4] < 1.0
    assert max(history["corpus_accuracy"][:4]) > 0.9, "unopposed, the classifier learns the corpora: %s" % history["corpus_accuracy"]
    assert len(model.outputs) == 1 and model.outputs[0].shape[-1] == nn.N_LABELS, "the emotion network alone is returned"
    model.save_weights(tmp_path / "w.weights.h5")
    plain = nn.build_model(frames, bands, settings)
    plain.load_weights(tmp_path / "w.weights.h5")
    assert np.allclose(nn.predict_logits(plain, windows[:4]), nn.predict_logits(model, windows[:4]), atol=1e-5)


def test_the_adversary_waits_out_its_warm_up_then_ramps_to_its_strength():
    from tools.model import nn

    ramp = [nn.adversary_strength(0.5, epoch, 40, warmup=0.25) for epoch in range(40)]
    assert ramp[:11] == [0.0] * 11 and 0.49 < ramp[-1] <= 0.5
    assert all(a < b for a, b in zip(ramp[10:], ramp[11:]))
    assert ramp == [nn.adversary_strength(0.5, epoch - 10, 30) if epoch >= 10 else 0.0 for epoch in range(40)]


def test_settings_added_later_keep_the_cache_names_of_earlier_runs():
    from tools.model import nn

    plain = nn.TrainSettings(epochs=3)
    assert "corpus_adversary" not in plain.key() and plain.key().startswith("TrainSettings(epochs=3")
    assert "corpus_adversary=0.5" in nn.TrainSettings(epochs=3, corpus_adversary=0.5).key()
    assert "adversary_" not in nn.TrainSettings(epochs=3, corpus_adversary=0.5).key()
    assert "adversary_lr=0.001" in nn.TrainSettings(epochs=3, corpus_adversary=0.5, adversary_lr=1e-3).key()


def test_window_cache_names_stay_those_of_earlier_runs_while_later_gate_keys_hold_their_defaults():
    from serd.manifest import Clip
    from tools.model import augment, data

    clips = [Clip("/x/a.flac", "c:1", "happy", 1.0), Clip("/x/b.flac", "c:2", "sad", 2.0)]
    assert data.cache_key(clips, None, 0) == "8a235b99e3796db8"  # the key before [vad] gate and min_snr_db existed
    assert data.cache_key(clips, augment.AudioAugment(reverb_prob=0.4, telephone_prob=0.2), 1) == "616ec334eedf1cf4"


def test_weight_averaging_returns_the_mean_of_the_last_epochs_and_shows_the_last_one_first(monkeypatch):
    import keras

    from tools.model import nn
    from tools.model.data import WindowSet

    rng = np.random.default_rng(0)
    n_clips, frames, bands = 24, 24, 24
    windows = rng.normal(size=(n_clips, frames, bands)).astype(np.float32)
    versions = [WindowSet(windows, np.arange(n_clips))]
    labels = np.arange(n_clips) % 3
    mask = np.ones((n_clips, nn.N_LABELS), np.float32)
    snapshots, seen = [], []  # every epoch's end weights; what last_iterate was shown
    plain_fit = keras.Model.fit

    def fit_and_keep(self, *args, **kwargs):
        out = plain_fit(self, *args, **kwargs)
        snapshots.append([w.copy() for w in self.get_weights()])
        return out

    monkeypatch.setattr(keras.Model, "fit", fit_and_keep)
    settings = nn.TrainSettings(epochs=4, filters=(4, 8), batch_size=8, weight_average=0.5)
    model, _ = nn.train_drawn(versions, labels, mask, np.full(n_clips, 1 / n_clips), settings, 16,
                              last_iterate=lambda m: seen.append([w.copy() for w in m.get_weights()]))
    assert len(snapshots) == 4 and len(seen) == 1, "one snapshot an epoch; the last epoch's network shown once"
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], snapshots[-1])), "last_iterate sees the last epoch's weights"
    names = [w.path for w in model.weights]
    for name, got, a, b in zip(names, model.get_weights(), snapshots[2], snapshots[3]):
        if "moving_" not in name:
            assert np.allclose(got, (a + b) / 2, atol=1e-6), "%s is the mean of the last two epochs" % name
    with pytest.raises(ValueError, match="weight_average must be in"):
        nn.averaged_epoch_count(nn.TrainSettings(weight_average=1.0))
    assert nn.averaged_epoch_count(nn.TrainSettings(epochs=60, weight_average=0.25)) == 15
    assert nn.averaged_epoch_count(nn.TrainSettings(epochs=60)) == 0


def test_batch_norm_statistics_are_recomputed_as_the_mean_of_the_batches_seen_through_the_weights():
    import keras

    from tools.model import nn

    rng = np.random.default_rng(1)
    model = nn.build_model(16, 16, nn.TrainSettings(filters=(4, 8)))
    windows = (rng.normal(size=(40, 16, 16)) * 3 + 2).astype(np.float32)
    nn.recompute_batch_norm(model, windows, batch_size=8)
    conv = keras.Model(model.inputs, model.get_layer("conv0").output)
    batch_means = [conv(windows[k:k + 8, ..., None]).numpy().mean(axis=(0, 1, 2)) for k in range(0, 40, 8)]
    norm = model.get_layer("bn0")
    assert np.allclose(norm.moving_mean.numpy(), np.mean(batch_means, axis=0), atol=1e-4)
    assert norm.momentum == keras.layers.BatchNormalization().momentum, "the layer's momentum is put back"
