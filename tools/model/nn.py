"""The Keras CNN (log-mel window -> logits), its training loop and float inference."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from tools.model import augment
from tools.model.data import WindowSet

log = logging.getLogger(__name__)

N_LABELS = 8
MASKED_LOGIT = 1e4  # subtracted from the logits of classes a clip's corpus lacks
TF_THREADS = 1


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes one training run."""

    epochs: int = 25
    batch_size: int = 32
    learning_rate: float = 2e-3
    filters: tuple[int, ...] = (16, 32, 48, 64)
    stem_stride: int = 1  # 2: the first convolution strides 2 in place of its max-pool (a quarter of its cost)
    space_to_depth: bool = False  # each 2x2 block of the input becomes 4 channels; the first block runs at half resolution, unpooled
    separable: bool = False  # blocks after the first: 3x3 depthwise + 1x1 pointwise convolution (about a ninth of the multiplies)
    dropout: float = 0.3
    label_smoothing: float = 0.0
    spec_augment: bool = False
    freq_warp: float = 1.0  # > 1: each drawn window's frequency axis scaled by a factor in [1/freq_warp, freq_warp] (VTLP)
    aug_copies: int = 0  # augmented audio copies per clip drawn alongside the clean one
    audio: augment.AudioAugment = augment.AudioAugment()
    distill_weight: float = 0.0  # share of the loss taken by the teacher's soft labels (0 = hard labels only)
    distill_temperature: float = 2.0  # softens teacher and student alike in the distillation term
    teacher_centred: bool = False  # the teacher's features are centred on each speaker's mean (teacher.speaker_centred)
    teacher_crossfit: bool = False  # each training clip's soft labels from a head fitted without its speakers (teacher.crossfit_logits)
    teacher_students: tuple[str, ...] = ()  # CV variants whose trained models join the Whisper head as teachers (teacher.combined_logits)
    normalisation: str = "window"  # "window": per-window mean/variance; "speaker": each speaker's mean/variance (data.speaker_normalised)
    seed: int = 1234
    corpus_adversary: float = 0.0  # > 0: a corpus classifier on the pooled embedding learns through a gradient reversal of this
    # strength (ramped up from 0 over training), so the embedding is pushed to not tell the training corpora apart (DANN)
    adversary_warmup: float = 0.0  # share of the epochs trained at strength 0 before the ramp starts (the classifier learns first)
    adversary_lr: float = 0.0  # > 0: the corpus classifier has its own Adam at this constant rate and updates in turn with the
    # network (alternating steps), and the network learns to make its output uniform (domain confusion) instead of
    # maximising its loss through the reversal layer
    weight_average: float = 0.0  # > 0: this last share of the epochs runs at a constant learning rate (AVERAGED_LR_SHARE of
    # the peak, reached by the cosine decay) and the network is the mean of their end-of-epoch weights (stochastic weight
    # averaging), batch-norm statistics recomputed for the mean weights

    def key(self) -> str:
        """What identifies these settings in cache names: their repr, without the fields added since the first
        multi-corpus runs while they hold their defaults (so those runs' caches stay valid)."""
        text = repr(self)
        for name in LATER_FIELDS:
            default = repr(getattr(TrainSettings, name))
            if repr(getattr(self, name)) == default:
                text = text.replace(", %s=%s" % (name, default), "")
        return text


LATER_FIELDS = ("corpus_adversary", "adversary_warmup", "adversary_lr", "weight_average")
AVERAGED_LR_SHARE = 0.2  # the constant learning rate of the averaged epochs, as a share of the peak
ADVERSARY_HIDDEN = 64  # units of the corpus classifier's hidden layer


def tf_setup(seed: int):
    """Import TensorFlow with one thread per process and fixed seeds; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OMP_NUM_THREADS", str(TF_THREADS))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(TF_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(TF_THREADS)
    except RuntimeError:
        log.debug("TensorFlow threads were already set")
    tf.keras.utils.set_random_seed(seed)
    return tf


def build_model(frames: int, n_features: int, settings: TrainSettings, n_labels: int = N_LABELS):
    """Conv blocks (conv-BN-ReLU-pool) -> global average pooling -> dropout -> dense logits.

    With settings.stem_stride 2 the first block strides its convolution instead of pooling, so the
    later blocks see the same resolution at a quarter of the first block's cost. With
    settings.space_to_depth the input's 2x2 blocks are stacked as 4 channels first: the first block
    again runs at half resolution without a pool, but its convolution sees every input cell. With
    settings.separable every block after the first factorises its convolution into a 3x3 depthwise one
    (with its own BN-ReLU) and a 1x1 pointwise one, as MobileNet does; the first block, fed one or four
    channels, keeps the full convolution."""
    tf = tf_setup(settings.seed)
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(frames, n_features, 1), name="logmel")
    x = inputs
    if settings.space_to_depth:
        if frames % 2 or n_features % 2:
            raise ValueError("space_to_depth needs an even window: %d frames x %d bands" % (frames, n_features))
        x = layers.Reshape((frames // 2, 2, n_features // 2, 2), name="blocks")(x)
        x = layers.Permute((1, 3, 2, 4), name="blocks_last")(x)
        x = layers.Reshape((frames // 2, n_features // 2, 4), name="space_to_depth")(x)
    for i, width in enumerate(settings.filters):
        stride = settings.stem_stride if i == 0 else 1
        if settings.separable and i > 0:
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise%d" % i)(x)
            x = layers.BatchNormalization(name="depthwise_bn%d" % i)(x)
            x = layers.ReLU(name="depthwise_relu%d" % i)(x)
            x = layers.Conv2D(width, 1, use_bias=False, name="conv%d" % i)(x)
        else:
            x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name="conv%d" % i)(x)
        x = layers.BatchNormalization(name="bn%d" % i)(x)
        x = layers.ReLU(name="relu%d" % i)(x)
        half_resolution_stem = i == 0 and (stride != 1 or settings.space_to_depth)
        if i < len(settings.filters) - 1 and not half_resolution_stem:
            x = layers.MaxPooling2D(2, name="pool%d" % i)(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(settings.dropout, name="dropout")(x)
    outputs = layers.Dense(n_labels, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="serd_emotion")


def embedding_model(model):
    """The network up to its pooled embedding (the input of the dense logits), sharing the trained weights."""
    import tensorflow as tf

    return tf.keras.Model(model.inputs, model.get_layer("gap").output, name="serd_emotion_embedding")


def sample_weights(labels: np.ndarray, clip_index: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-window weights: classes balanced, each clip counted once however many windows it has."""
    windows_per_clip = np.bincount(clip_index)
    per_window = 1.0 / windows_per_clip[clip_index]
    class_mass = np.bincount(labels, weights=per_window, minlength=n_labels)
    weights = per_window / np.maximum(class_mass[labels], 1e-9)
    return (weights / weights.mean()).astype(np.float32)


def window_augment(windows: np.ndarray, settings: TrainSettings, rng: np.random.Generator) -> np.ndarray:
    """The settings' augmentations of normalised windows, drawn anew each epoch: frequency warp, then SpecAugment."""
    if settings.freq_warp > 1.0:
        windows = augment.freq_warp(windows, settings.freq_warp, rng)
    if settings.spec_augment:
        windows = augment.spec_augment(windows, augment.SpecAugment(), rng)
    return windows


def epoch_data(versions: list[WindowSet], clip_labels: np.ndarray, rng: np.random.Generator,
               teacher_logits: list[np.ndarray] | None = None) -> tuple:
    """One version per clip (0 = clean, others augmented copies).

    Returns windows, labels, clip ids and the teacher's logits of those windows (None without a teacher).
    """
    n_clips = len(clip_labels)
    chosen = rng.integers(0, len(versions), size=n_clips)
    masks = [chosen[v.clip_index] == k for k, v in enumerate(versions)]
    windows = np.concatenate([v.windows[m] for v, m in zip(versions, masks)])
    clip_index = np.concatenate([v.clip_index[m] for v, m in zip(versions, masks)])
    teacher = None if teacher_logits is None else np.concatenate([t[m] for t, m in zip(teacher_logits, masks)])
    return windows, clip_labels[clip_index], clip_index, teacher


def distillation_loss(tf, settings: TrainSettings, n_labels: int = N_LABELS):
    """Targets are [one-hot | teacher softmax at T]: (1 - w) CE(hard) + w T² CE(teacher_T, student_T)."""
    weight, temperature = settings.distill_weight, settings.distill_temperature

    def loss(targets, logits):
        hard = tf.nn.softmax_cross_entropy_with_logits(targets[:, :n_labels], logits)
        soft = tf.nn.softmax_cross_entropy_with_logits(targets[:, n_labels:], logits / temperature)
        return (1.0 - weight) * hard + weight * temperature ** 2 * soft

    return loss


def hard_accuracy(tf, n_labels: int = N_LABELS):
    """Accuracy against the one-hot part of the targets."""
    def accuracy(targets, logits):
        return tf.cast(tf.equal(tf.argmax(targets[:, :n_labels], 1), tf.argmax(logits, 1)), tf.float32)

    return accuracy


def train(versions: list[WindowSet], clip_labels: np.ndarray, settings: TrainSettings, validation=None,
          teacher_logits: list[np.ndarray] | None = None) -> tuple:
    """Train on versions[0] (clean) plus augmented versions; returns (model, history dict).

    With settings.distill_weight > 0, teacher_logits[k] holds the teacher's logits of versions[k]'s windows.
    """
    from serd.metrics import softmax

    tf = tf_setup(settings.seed)
    distilling = settings.distill_weight > 0
    if distilling and teacher_logits is None:
        raise ValueError("distill_weight > 0 needs teacher_logits")
    frames, n_features = versions[0].windows.shape[1:3]
    model = build_model(frames, n_features, settings)
    steps = settings.epochs * int(np.ceil(len(versions[0].windows) / settings.batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(steps, 1))
    if distilling:
        loss, metric = distillation_loss(tf, settings), hard_accuracy(tf)
    else:
        loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=settings.label_smoothing)
        metric = "accuracy"
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=loss, weighted_metrics=[metric])
    rng = np.random.default_rng(settings.seed)
    history: dict[str, list[float]] = {}
    for epoch in range(settings.epochs):
        windows, labels, clip_index, teacher = epoch_data(versions, clip_labels, rng, teacher_logits if distilling else None)
        windows = window_augment(windows, settings, rng)
        weights = sample_weights(labels, clip_index, N_LABELS)
        targets = np.eye(N_LABELS, dtype=np.float32)[labels]
        if teacher is not None:
            soft = softmax(teacher, settings.distill_temperature).astype(np.float32)
            targets = np.concatenate([targets, soft], axis=1)
        fit = model.fit(windows[..., None], targets, sample_weight=weights, batch_size=settings.batch_size,
                        epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0)
        _record(history, fit.history, validation(model, epoch) if validation else {})
        log.debug("epoch %d/%d loss %.3f", epoch + 1, settings.epochs, fit.history["loss"][-1])
    return model, history


def _record(history: dict, fit_history: dict, extra: dict) -> None:
    """Append this epoch's numbers to history."""
    for key, values in list(fit_history.items()) + [(k, [v]) for k, v in extra.items()]:
        history.setdefault(key, []).append(float(values[-1]))


def masked_loss(tf, n_labels: int):
    """Targets are [one-hot | class mask]: cross-entropy over the classes the clip's corpus has, so a class
    its corpus lacks is neither taught as right nor as wrong."""
    def loss(targets, logits):
        mask = targets[:, n_labels:]
        return tf.nn.softmax_cross_entropy_with_logits(targets[:, :n_labels], logits + (mask - 1.0) * MASKED_LOGIT)

    return loss


def drawn_windows(versions: list[WindowSet], drawn: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window indices (into each version) of the drawn clips in their chosen versions; returns (windows, clip of each)."""
    parts, owners = [], []
    for k, version in enumerate(versions):
        clips_here = drawn[chosen == k]
        starts = np.searchsorted(version.clip_index, clips_here, side="left")
        ends = np.searchsorted(version.clip_index, clips_here, side="right")
        index = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(clips_here) else np.zeros(0, np.int64)
        parts.append(version.windows[index.astype(np.int64)])
        owners.append(np.repeat(np.arange(len(drawn))[chosen == k], ends - starts))
    return np.concatenate(parts), np.concatenate(owners)


def train_drawn(versions: list[WindowSet], clip_labels: np.ndarray, class_mask: np.ndarray, draw_p: np.ndarray,
                settings: TrainSettings, draws_per_epoch: int, corpus_of_clip: np.ndarray | None = None,
                last_iterate=None) -> tuple:
    """Train on clips drawn (with replacement) by draw_p, each in a random version, every clip's windows counted
    once; the loss runs over the classes of the clip's corpus (class_mask). With settings.corpus_adversary, a corpus
    classifier (corpus_of_clip: each clip's corpus number) trains beside it, through a gradient reversal or, with
    settings.adversary_lr, in alternating steps (train_alternating). With settings.weight_average the returned
    network is the mean of the last epochs' weights; last_iterate(model), when given, sees the last epoch's network
    before the mean replaces it. Returns (model, history dict); the model is the emotion network alone, as
    build_model makes it."""
    tf = tf_setup(settings.seed)
    n_labels = class_mask.shape[1]
    frames, n_features = versions[0].windows.shape[1:3]
    model = build_model(frames, n_features, settings, n_labels)
    windows_per_draw = len(versions[0].windows) / max(1, len(clip_labels))
    steps = settings.epochs * int(np.ceil(draws_per_epoch * windows_per_draw / settings.batch_size))
    averaged_epochs = averaged_epoch_count(settings)
    if averaged_epochs:
        decay_steps = max(1, steps * (settings.epochs - averaged_epochs) // settings.epochs)
        schedule = tf.keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps, alpha=AVERAGED_LR_SHARE)
    else:
        schedule = tf.keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(steps, 1))
    adversary = None
    if settings.corpus_adversary > 0 and corpus_of_clip is None:
        raise ValueError("corpus_adversary > 0 needs each clip's corpus")
    if settings.corpus_adversary > 0 and averaged_epochs:
        raise ValueError("weight_average is not available with a corpus adversary")
    if settings.corpus_adversary > 0 and settings.adversary_lr > 0:
        return model, train_alternating(tf, model, versions, clip_labels, class_mask, draw_p, settings, draws_per_epoch,
                                        corpus_of_clip, schedule)
    if settings.corpus_adversary > 0:
        trained, adversary = adversarial_model(tf, model, int(corpus_of_clip.max()) + 1)
        trained.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                        loss=[masked_loss(tf, n_labels), tf.keras.losses.CategoricalCrossentropy(from_logits=True)])
    else:
        trained = model
        trained.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=masked_loss(tf, n_labels),
                        weighted_metrics=[hard_accuracy(tf, n_labels)])
    rng = np.random.default_rng(settings.seed)
    history: dict[str, list[float]] = {}
    weight_sum: list[np.ndarray] = []
    for epoch in range(settings.epochs):
        windows, targets, weights, clip = epoch_draw(versions, clip_labels, class_mask, draw_p, settings, draws_per_epoch, rng)
        if adversary is not None:
            adversary.strength.assign(adversary_strength(settings.corpus_adversary, epoch, settings.epochs,
                                                         settings.adversary_warmup))
            corpus_targets = np.eye(adversary.n_corpora, dtype=np.float32)[corpus_of_clip[clip]]
            fit = trained.fit(windows[..., None], (targets, corpus_targets), sample_weight=(weights, weights),
                              batch_size=settings.batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0)
        else:
            fit = trained.fit(windows[..., None], targets, sample_weight=weights,
                              batch_size=settings.batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0)
        _record(history, fit.history, {})
        log.info("epoch %d/%d loss %s", epoch + 1, settings.epochs,
                 ", ".join("%s %.3f" % (k, v[-1]) for k, v in fit.history.items() if k.endswith("loss")))
        if epoch >= settings.epochs - averaged_epochs:
            weight_sum = [w + total for w, total in zip(model.get_weights(), weight_sum)] if weight_sum else model.get_weights()
    if averaged_epochs:
        if last_iterate is not None:
            last_iterate(model)
        model.set_weights([w / averaged_epochs for w in weight_sum])
        recompute_batch_norm(model, windows, settings.batch_size)
        log.info("weights averaged over the last %d epochs", averaged_epochs)
    return model, history


def averaged_epoch_count(settings: TrainSettings) -> int:
    """How many final epochs settings.weight_average averages (0: none; at least one when asked)."""
    if not 0.0 <= settings.weight_average < 1.0:
        raise ValueError("weight_average must be in [0, 1): %r" % settings.weight_average)
    return max(1, int(round(settings.weight_average * settings.epochs))) if settings.weight_average > 0 else 0


def recompute_batch_norm(model, windows: np.ndarray, batch_size: int) -> None:
    """Set every batch-norm layer's moving mean and variance to the mean of its batch statistics over windows (the
    statistics of weights that were averaged, not trained, are unknown until the network sees data through them)."""
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, len(windows), batch_size)):
            for layer in norms:
                layer.momentum = k / (k + 1)  # a running mean over the batches seen so far
            model(windows[start:start + batch_size, ..., None], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def adversary_strength(strength: float, epoch: int, epochs: int, warmup: float = 0.0) -> float:
    """The adversary's strength in an epoch: 0 through the first `warmup` share of the epochs, then rising smoothly
    from 0 to `strength` (Ganin and Lempitsky's 2 / (1 + exp(-10 p)) - 1 ramp), so the emotion features form, and
    the corpus classifier learns to see the corpora, before the adversary pushes on them."""
    start = int(round(warmup * epochs))
    if epoch < start:
        return 0.0
    progress = (epoch - start) / max(1, epochs - 1 - start)
    return float(strength * (2.0 / (1.0 + np.exp(-10.0 * progress)) - 1.0))


def epoch_draw(versions: list[WindowSet], clip_labels: np.ndarray, class_mask: np.ndarray, draw_p: np.ndarray,
               settings: TrainSettings, draws_per_epoch: int, rng: np.random.Generator) -> tuple:
    """One epoch's training data: clips drawn by draw_p, each in a random version, augmented windows; returns
    (windows, targets [one-hot | class mask], per-window weights counting every drawn clip once, clip of each window)."""
    n_labels = class_mask.shape[1]
    drawn = rng.choice(len(clip_labels), size=draws_per_epoch, p=draw_p)
    windows, owner = drawn_windows(versions, drawn, rng.integers(0, len(versions), size=len(drawn)))
    windows = window_augment(windows, settings, rng)
    weights = 1.0 / np.bincount(owner, minlength=len(drawn))[owner]
    weights = (weights / weights.mean()).astype(np.float32)
    clip = drawn[owner]
    targets = np.concatenate([np.eye(n_labels, dtype=np.float32)[clip_labels[clip]], class_mask[clip]], axis=1)
    return windows, targets, weights, clip


def train_alternating(tf, model, versions: list[WindowSet], clip_labels: np.ndarray, class_mask: np.ndarray,
                      draw_p: np.ndarray, settings: TrainSettings, draws_per_epoch: int, corpus_of_clip: np.ndarray,
                      schedule) -> dict:
    """Domain-adversarial training in alternating steps: each batch, the corpus classifier (its own Adam at
    settings.adversary_lr, constant) learns the corpora from the pooled embedding, and the network learns the emotions
    while making that classifier's output uniform over the corpora (emotion loss + strength x cross-entropy to the
    uniform distribution, the strength warmed up and ramped by adversary_strength). Confusion is bounded (it is least
    at chance), where maximising the classifier's loss rewards making it confidently wrong, a corpus signal of its own.
    Trains model in place; returns the history (emotion loss, corpus loss and accuracy, strength per epoch)."""
    n_labels, n_corpora = class_mask.shape[1], int(corpus_of_clip.max()) + 1
    joint = tf.keras.Model(model.inputs, [model.outputs[0], model.get_layer("gap").output], name="serd_emotion_joint")
    layers = tf.keras.layers
    classifier = tf.keras.Sequential([tf.keras.Input((int(model.get_layer("gap").output.shape[-1]),)),
                                      layers.Dense(ADVERSARY_HIDDEN, activation="relu", name="corpus_hidden"),
                                      layers.Dense(n_corpora, name="corpus_logits")], name="corpus_classifier")
    network_optimizer = tf.keras.optimizers.Adam(schedule)
    classifier_optimizer = tf.keras.optimizers.Adam(settings.adversary_lr)
    network_optimizer.build(model.trainable_variables)
    classifier_optimizer.build(classifier.trainable_variables)
    strength = tf.Variable(0.0, trainable=False, dtype=tf.float32)
    emotion_loss = masked_loss(tf, n_labels)

    frames, n_features = model.inputs[0].shape[1:3]
    signature = (tf.TensorSpec((None, frames, n_features, 1), tf.float32), tf.TensorSpec((None, 2 * n_labels), tf.float32),
                 tf.TensorSpec((None, n_corpora), tf.float32), tf.TensorSpec((None,), tf.float32))

    @tf.function(input_signature=signature)
    def step(x, targets, corpus, weights):
        total = tf.reduce_sum(weights)
        with tf.GradientTape(persistent=True) as tape:
            logits, embedding = joint(x, training=True)
            corpus_logits = classifier(embedding, training=True)
            emotion = tf.reduce_sum(weights * emotion_loss(targets, logits)) / total
            corpus_loss = tf.reduce_sum(weights * tf.nn.softmax_cross_entropy_with_logits(corpus, corpus_logits)) / total
            to_uniform = -tf.reduce_mean(tf.nn.log_softmax(corpus_logits), axis=1)  # cross-entropy to the uniform distribution
            confusion = tf.reduce_sum(weights * to_uniform) / total
            network_loss = emotion + strength * confusion
        classifier_grads = tape.gradient(corpus_loss, classifier.trainable_variables)
        network_grads = tape.gradient(network_loss, model.trainable_variables)
        del tape
        classifier_optimizer.apply_gradients(zip(classifier_grads, classifier.trainable_variables))
        network_optimizer.apply_gradients(zip(network_grads, model.trainable_variables))
        hits = tf.cast(tf.equal(tf.argmax(corpus, 1), tf.argmax(corpus_logits, 1)), tf.float32)
        return emotion * total, corpus_loss * total, tf.reduce_sum(weights * hits)

    rng = np.random.default_rng(settings.seed)
    history: dict[str, list[float]] = {}
    for epoch in range(settings.epochs):
        strength.assign(adversary_strength(settings.corpus_adversary, epoch, settings.epochs, settings.adversary_warmup))
        windows, targets, weights, clip = epoch_draw(versions, clip_labels, class_mask, draw_p, settings, draws_per_epoch, rng)
        corpus = np.eye(n_corpora, dtype=np.float32)[corpus_of_clip[clip]]
        order = rng.permutation(len(windows))
        sums = np.zeros(3)
        for begin in range(0, len(order), settings.batch_size):
            rows = np.sort(order[begin:begin + settings.batch_size])
            sums += [float(v) for v in step(windows[rows][..., None], targets[rows], corpus[rows], weights[rows])]
        means = {"loss": sums[0] / weights.sum(), "corpus_loss": sums[1] / weights.sum(),
                 "corpus_accuracy": sums[2] / weights.sum(), "adversary_strength": float(strength.numpy())}
        _record(history, {k: [v] for k, v in means.items()}, {})
        log.info("epoch %d/%d emotion loss %.3f, corpus loss %.3f (accuracy %.3f) at strength %.3f", epoch + 1,
                 settings.epochs, means["loss"], means["corpus_loss"], means["corpus_accuracy"], means["adversary_strength"])
    return history


def adversarial_model(tf, model, n_corpora: int) -> tuple:
    """model with a second output: corpus logits from its pooled embedding through a gradient reversal layer.
    Returns (the two-output training model, the reversal layer: its `strength` is set each epoch)."""
    layers = tf.keras.layers

    class GradientReversal(layers.Layer):
        """Identity forward; backward, the gradient times -strength."""

        def __init__(self, corpora: int, **kwargs):
            super().__init__(**kwargs)
            self.n_corpora = corpora
            self.strength = tf.Variable(0.0, trainable=False, dtype=tf.float32)

        def call(self, x):
            @tf.custom_gradient
            def reverse(y):
                return tf.identity(y), lambda dy: -self.strength * dy

            return reverse(x)

    reversal = GradientReversal(n_corpora, name="gradient_reversal")
    x = reversal(model.get_layer("gap").output)
    x = layers.Dense(ADVERSARY_HIDDEN, activation="relu", name="corpus_hidden")(x)
    corpus_logits = layers.Dense(n_corpora, name="corpus_logits")(x)
    return tf.keras.Model(model.inputs, [model.outputs[0], corpus_logits], name="serd_emotion_adversarial"), reversal


def predict_logits(model, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float logits for (n, frames, bands) windows."""
    if len(windows) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    return np.asarray(model.predict(windows[..., None], batch_size=batch_size, verbose=0), dtype=np.float32)


def clip_probs(window_logits: np.ndarray, clip_index: np.ndarray, n_clips: int, temperature: float = 1.0) -> tuple:
    """Mean of window softmaxes per clip (what `serd analyze` does); returns (probs, has_windows)."""
    from serd.metrics import softmax

    probs = softmax(window_logits, temperature)
    sums = np.zeros((n_clips, probs.shape[1]))
    np.add.at(sums, clip_index, probs)
    counts = np.bincount(clip_index, minlength=n_clips)
    has_windows = counts > 0
    sums[has_windows] /= counts[has_windows, None]
    return sums, has_windows
