"""MODEL_CARD.md of the multi-corpus model: data and licences, protocol, LOCO and speaker-grouped figures, history."""

from __future__ import annotations

from pathlib import Path

from tools.model import recipes

CORPUS_FACTS = {  # language, speakers, licence (as published; ../shared/corpora/README.md)
    "bangla": ("Bangla", "34 actors", "BanglaSER (Das et al., Data in Brief 2022), CC BY 4.0"),
    "emovo": ("Italian", "6 (3 f, 3 m)", "EMOVO (Costantini et al., LREC 2014), free for research"),
    "ravdess": ("English (North American)", "20 of 24 actors", "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0"),
    "savee": ("English (British)", "4 men", "SAVEE (Jackson & Haq 2014), free for research"),
    "tess": ("English (Canadian)", "2 women", "TESS (Dupuis & Pichora-Fuller 2010), CC BY-NC-ND 4.0"),
}
HISTORY = (
    "| model | trained on | on corpora it never heard |\n|---|---|---|\n"
    "| 1.0–1.5.0 | RAVDESS only (20 actors, 8 classes), chosen among ~25 variants on the same five RAVDESS folds "
    "(68–74.5 % there; 64–67 % on four further RAVDESS actors) | `serd eval --merge calm=neutral --classes present`, "
    "a fresh voice per clip: BanglaSER 42.1, EMOVO 26.5, SAVEE 27.1, TESS 40.4 (mean 34.0 %), ECE 0.15–0.25; with the "
    "speaker-centred head over each speaker's whole (balanced) session 43.7 / 32.7 / 28.6 / 48.4 — a gain that "
    "one-emotion sessions take back (Whisper head below) |\n"
    "| 2.0.0 | five corpora, three languages (7 shared classes) | LOCO above: BanglaSER 41.1, EMOVO 25.3, SAVEE 27.0, "
    "TESS 28.1 on the same four (mean 30.4 %), RAVDESS 37.0 (recipe multi7: mean 31.7 %); ECE 0.04–0.09 |\n"
    "| 2.1.0 | the same, trained twice as long (recipe multi7long) | LOCO above (mean 36.1 %; TESS 28.1 → 42.5, EMOVO "
    "25.3 → 29.9, SAVEE 27.0 → 29.4, RAVDESS 37.0 → 37.9, BanglaSER 41.1 → 40.7) |\n"
    "| 2.2.0 | the same, trained four times as long as 2.0.0 (recipe multi7x4) | LOCO above (mean 37.9 %; SAVEE "
    "29.4 → 34.9, RAVDESS 37.9 → 41.2, BanglaSER 40.7 → 42.8, EMOVO 29.9 → 31.8, TESS 42.5 → 38.9) |\n\n"
    "2.0.0 is no more accurate than 1.5.0 on voices from other corpora (3.6 points lower on the four, most of it "
    "TESS); it ships because it speaks the labels the corpora share, has no speaker centring to collapse under a "
    "sustained emotion, and its confidence is calibrated on corpora it never saw, so `[smoothing] min_confidence` "
    "can say `uncertain` instead of a confident wrong answer. 2.1.0 is the first multi-corpus model at least level with 1.5.0 on "
    "those four corpora (mean 35.6 % against 34.0 %, within the spread), and the first whose confidence and arousal are measured across corpora. "
    "2.2.0 gains on four of the five held-out corpora and loses 3.6 points on TESS; the mean gain over 2.1.0 (1.8 points) "
    "is within the spread across corpora, and it is the third recipe tried on these five folds. The fourth, multi7warp "
    "(multi7long's length with the voice warped in frequency, to break the held-out corpora's voice-register confusions), "
    "scored 33.9 % against multi7long's 36.1 % (TESS 31.9 against 42.5) and was not shipped. The fifth, multi7dann "
    "(multi7long with a corpus classifier trained through a gradient reversal, to make the features blind to the "
    "corpus), was stopped after two folds (BanglaSER 40.2, EMOVO 30.3; multi7long 40.7, 29.9) because its adversary "
    "had not taken hold: its corpus classifier stayed at chance during training, yet a linear probe reads the "
    "training corpus from its embedding as well as from multi7warp's (`python -m tools.study.corpus_probe`: 80.5 % "
    "against 80.8 %, chance 25 %, speaker-grouped). The sixth, multi7conf, gave the adversary its own optimizer, a "
    "warm-up in which it learned the corpora unopposed (60 % of training windows, chance 25 %), and a bounded "
    "objective (the network makes its output uniform); it took hold (the probe fell to 54.8 %: 60.2 and 49.3 on the "
    "two folds) but took the emotions with it: the training emotion loss rose from 1.46 at the end of the warm-up to "
    "1.74–1.82 (multi7dann ended at 1.23–1.35, chance is about 1.9) and the held-out corpora scored no better "
    "(BanglaSER 39.7, EMOVO 29.6, with neutral, happy and disgust never recalled on EMOVO); stopped after those two "
    "folds. In these acted corpora what tells the corpora apart is tangled with what tells the emotions apart, and "
    "removing one removes the other. The seventh, multi7x4s2d, is for cost, not accuracy: multi7x4 with a "
    "space-to-depth first block, whose int8 invoke takes 0.78 ms against 1.05 ms (p50, one AVX2 core, the same "
    "session); it scored 36.7 % against 37.9 (lower on four of the five held-out corpora: BanglaSER 41.8, EMOVO 29.9, "
    "RAVDESS 39.1, SAVEE 32.1 against 42.8, 31.8, 41.2, 34.9; TESS 40.4 against 38.9) and lower in every altered room "
    "(noise 34.1 against 36.2, reverberation 32.7 against 35.1, telephone 32.8 against 34.4, clipping 30.0 against "
    "32.1), so it was not shipped: the cheaper invoke is not worth a voice heard less truly. Averaging its posteriors "
    "with multi7warp's (`python -m tools.study.ensemble --recipes multi7warp,multi7x4s2d`) scores 36.7 %, no better "
    "than it alone. The eighth, multi7x8, trains multi7x4 twice as long again, since each doubling had lifted LOCO; "
    "its first fold, EMOVO (the hardest held-out corpus), scored 32.0 % against 31.8 (EMOVO by training length: 25.3, "
    "29.9, 31.8, 32.0), with arousal 67.6 against 70.9 %, better in noise, reverberation and on a telephone line "
    "(35.2, 32.3, 31.1 against 33.3, 29.6, 27.2) and worse at -20 dB and clipped (29.6, 26.4 against 31.1, 26.9): "
    "on this corpus the gain from length has run out. A fold takes 2.1 h on one of two loaded cores; the other four "
    "folds can be run later (`python -m tools.study.loco --recipe multi7x8 --protocol loco --folds bangla,ravdess`). "
    "The ninth, multi7x4swa, is multi7x4 whose network is the mean of its last 15 epochs' weights (stochastic weight "
    "averaging at a constant fifth of the peak learning rate, batch-norm statistics recomputed), one of the few kinds "
    "of method that have beaten plain training on unseen domains in domain-generalisation benchmarks, where adversaries "
    "have not; same network and cost as the shipped model. It was stopped after four folds, level with multi7x4 on "
    "them (37.4 against 37.7 %): BanglaSER 44.9 against 42.8, EMOVO 31.1 against 31.8, RAVDESS 39.9 against 41.2, "
    "SAVEE 33.6 against 34.9, with no steady gain in the altered rooms either (better reverberation on three of the "
    "four, worse noise on two). In the same runs the last epoch's network, before averaging, scores 29.4 % on the "
    "four: at that constant rate single networks wander and their mean is what holds, but it holds no better than "
    "multi7x4's cosine decay to zero. The tenth, multi7pitch, changes what the network hears rather than how it "
    "trains: beside the 40 log-mel bands (about 75 Hz wide below 1 kHz, too coarse to resolve the harmonics that carry "
    "pitch), every frame carries its periodicity at 24 candidate F0s from 65 to 520 Hz (feature kind `logmel_pitch`), "
    "so the window shows the intonation contour, which the per-window normalisation makes relative to the window's own "
    "voice. At multi7long's length, so that the two differ only in the input: BanglaSER 45.0 against 40.7 (angry "
    "recalled 41.2 % against 17.0, sad 62.4 against 44.1, neutral over-predicted less: 57.0 against 77.7), EMOVO 32.1 "
    "against 29.9 (both above multi7x4's 42.8 and 31.8 at half its training), RAVDESS 37.7 against 37.9 (multi7x4 "
    "41.2); better on a telephone line (41.2, 30.8, 41.1 against 37.2, 27.7, 37.1) and in reverberation on RAVDESS "
    "(37.7 against 32.3). SAVEE 28.1 against 29.4 (multi7x4 34.9): its four men are no longer heard as neutral "
    "(recall 35.0 against 92.5) but angry falls from 51.7 to 18.3. Mean of the four: 35.7 against multi7long's 34.5 "
    "and multi7x4's 37.7, a gain within the spread across corpora, largest on BanglaSER. TESS "
    "is still to be run "
    "(`python -m tools.study.loco --recipe multi7pitch --protocol loco --folds tess`); the input is 64 "
    "bands wide, so a fold costs about 1.5 times multi7long's, and the front end's pitch part costs two to three times the "
    "log-mel part.\n"
)


def _pct(value: float) -> str:
    return "%.1f" % (100.0 * value)


def _pm(stats: list[float]) -> str:
    """mean ± std (min–max) in percent."""
    return "%s ± %s (%s–%s)" % tuple(_pct(v) for v in stats)


def write_model_card(card: dict, results: dict, path: Path) -> None:
    """Write the Markdown model card."""
    study = results.get("recipes", {}).get(card["training"]["recipe"], {})
    parts = [_header(card), _data_section(card), _protocol_section(results, card["training"]["recipe"]), _loco_section(study.get("loco")),
             _affect_section(study.get("loco")), _conditions_section(study.get("loco")), _speakers_section(study.get("speakers"), results.get("recipes", {})),
             _calibration_section(study.get("loco"), card), _whisper_section(results.get("whisper_head"), results.get("whisper_head_span")), _model_section(card), _history_section(), _limits_section(),
             _reproduce_section(card, study)]
    path.write_text("\n".join(part for part in parts if part) + "\n")


def _header(card: dict) -> str:
    return ("# Model card: %s %s\n\nSpeech emotion from 2 s log-mel windows, %d labels: %s. An int8 TFLite network of "
            "%d parameters (%.0f KB); serd averages its window posteriors over each speech segment.\n\n"
            "**Licence of the weights:** %s\n" % (card["name"], card["version"], len(card["labels"]), ", ".join(card["labels"]),
                                                  card["metrics"]["parameters"], card["metrics"]["size_bytes"] / 1024,
                                                  card.get("licence", "")))


def _data_section(card: dict) -> str:
    training = card["training"]
    rows = ["| corpus | language | speakers | classes | licence |", "|---|---|---|---|---|"]
    for name, classes in training["corpora"].items():
        language, speakers, licence = CORPUS_FACTS.get(name, ("?", "?", "user-supplied"))
        rows.append("| %s | %s | %s | %s | %s |" % (name, language, speakers, ", ".join(classes), licence))
    return ("## Data\n\n%d clips, %d speakers (keyed corpus:speaker). RAVDESS's calm is folded into neutral. Speech is "
            "what serd's own VAD passes, in the daemon's 2 s windows every 0.5 s.\n\n%s\n\nThe weights are trained on all "
            "of these, so they carry the strictest terms among them: non-commercial use (RAVDESS CC BY-NC-SA, TESS CC BY-NC-ND). "
            "`make model` retrains on any manifests a user is licensed to use (`python -m tools.train --manifest A.tsv "
            "--manifest B.tsv`).\n\nRecipe `%s`: %s.\n" % (training["clips"], training["speakers"], "\n".join(rows),
                                                              training["recipe"], training["description"]))


def _protocol_section(results: dict, chosen: str) -> str:
    recipes = results.get("recipes", {})
    n_folds = len(recipes.get(chosen, {}).get("loco", {}).get("folds_done", []))
    tried = ["`%s` %s" % (name, _tried_figure(entry.get("loco"), n_folds)) for name, entry in recipes.items()]
    return ("## Protocol\n\n- **Leave-one-corpus-out (LOCO), the headline**: for each corpus, a model trained on the "
            "other four is scored on it; UAR over the classes that corpus has, with predictions restricted to those "
            "classes (and, unrestricted, over all seven). Mean ± sample std (min–max) over the five corpora.\n"
            "- **Speaker-grouped 5-fold CV of the pooled corpora**: no speaker in both training and test; scored per corpus "
            "as above.\n- Every figure is of the int8 model, clip label = argmax of the mean window posterior, clips "
            "without speech counted as wrong.\n- Recipes tried on these folds: **%d** (LOCO mean UAR restricted: %s); the "
            "shipped one is `%s`, %s. Each recipe was fixed before its LOCO run, for the "
            "reason it states (the first from earlier RAVDESS-only measurements: per-window normalisation and breadth "
            "generalise, distillation and speaker centring did not cross corpora):\n%s\n\n"
            "Choosing the best of %d on the same five folds flatters the chosen figure a little; a corpus none of "
            "them saw would tell the true one.\n" % (len(recipes), "; ".join(tried), chosen, why_chosen(recipes, chosen),
                                                     _reasons(recipes), len(recipes)))


def why_chosen(recipes: dict, chosen: str) -> str:
    """Why the shipped recipe: the highest LOCO mean among the recipes whose folds all ran, or how far below it."""
    n_folds = len(recipes.get(chosen, {}).get("loco", {}).get("folds_done", []))
    stats = {name: entry["loco"]["mean"]["uar_restricted"] for name, entry in recipes.items()
             if len(entry.get("loco", {}).get("folds_done", [])) == n_folds and "mean" in entry["loco"]}
    best = max(stats, key=lambda name: stats[name][0]) if stats else chosen
    if best == chosen or chosen not in stats:
        return "the one with the highest LOCO mean"
    gap = stats[best][0] - stats[chosen][0]
    return "chosen for its cost (a cheaper network), %s points below the highest LOCO mean (`%s`, %s)%s" % (
        _pct(gap), best, _pct(stats[best][0]), ", less than one standard deviation across corpora" if gap < stats[chosen][1] else "")


def _tried_figure(loco: dict | None, n_folds: int) -> str:
    """A recipe's LOCO mean, or the folds it has run so far (stopped, or still to be run)."""
    if not loco:
        return "(no LOCO yet)"
    done = loco.get("folds_done", [])
    if len(done) < n_folds:
        scores = ", ".join("%s %s" % (name, _pct(loco["per_corpus"][name]["uar_restricted"])) for name in done)
        return "(%d of %d folds run: %s)" % (len(done), n_folds, scores)
    return _pm(loco["mean"]["uar_restricted"])


def _reasons(recipes: dict) -> str:
    """One line per recipe tried: its name and the description it was fixed with."""
    return "\n".join("  - `%s`: %s" % (name, entry.get("description", "")) for name, entry in recipes.items())


def _loco_section(entry: dict | None) -> str:
    if not entry:
        return "## Leave-one-corpus-out\n\nNot run yet.\n"
    rows = ["| held-out corpus | clips | UAR restricted | UAR unrestricted | per-class recall (restricted) |", "|---|---|---|---|---|"]
    for name, scores in entry["per_corpus"].items():
        recall = ", ".join("%s %s" % (label, _pct(v)) for label, v in scores["recall_restricted"].items())
        rows.append("| %s | %d | %s | %s | %s |" % (name, scores["clips"], _pct(scores["uar_restricted"]),
                                                    _pct(scores["uar_unrestricted"]), recall))
    mean = entry["mean"]
    return ("## Leave-one-corpus-out (folds done: %s)\n\n%s\n\n**Mean UAR restricted %s**; unrestricted %s; float "
            "network restricted %s.\n" % (", ".join(entry["folds_done"]), "\n".join(rows), _pm(mean["uar_restricted"]),
                                          _pm(mean["uar_unrestricted"]), _pm(mean["float_uar_restricted"])))


def _affect_section(entry: dict | None) -> str:
    """Arousal and valence on the held-out corpora: two-way UAR per corpus (chance 50 %) and, where scored, the
    correlation of the events' derived arousal and valence with the truth."""
    mean = entry["mean"] if entry else {}
    if "arousal_uar" not in mean:
        return ""
    per = ", ".join("%s %s / %s" % (name, _pct(s["arousal_uar"]) if s["arousal_uar"] is not None else "–",
                                    _pct(s["valence_uar"]) if s["valence_uar"] is not None else "–")
                    for name, s in entry["per_corpus"].items())
    return ("## Arousal and valence\n\nLeave-one-corpus-out, as above. Arousal (high: happy, angry, fearful, surprised) and "
            "valence (negative: sad, angry, fearful, disgust), "
            "each a two-way split of the unrestricted posterior (Schuller et al. 2010's mapping; chance 50 %%): "
            "**arousal UAR %s**, valence UAR %s (per corpus, arousal / valence: %s).\n%s"
            % (_pm(mean["arousal_uar"]), _pm(mean["valence_uar"]), per, _circumplex(entry)))


def _circumplex(entry: dict) -> str:
    """Correlation of the arousal and valence the events carry (serd.affect) with the true label's, where scored."""
    mean = entry["mean"]
    if "arousal_r" not in mean:
        return ""
    per = ", ".join("%s %.2f / %.2f" % (name, s["arousal_r"], s["valence_r"]) for name, s in entry["per_corpus"].items()
                    if s.get("arousal_r") is not None and s.get("valence_r") is not None)
    return ("\nThe `arousal` and `valence` of serd's events (each clip's mean probabilities placed by the NRC VAD lexicon's "
            "points, docs/events.md) against the points of the clips' true labels, Pearson r over clips: **arousal r "
            "%.2f ± %.2f** (%.2f–%.2f), valence r %.2f ± %.2f (per corpus, arousal / valence: %s).\n"
            % (*mean["arousal_r"], *mean["valence_r"][:2], per))


def _conditions_section(entry: dict | None) -> str:
    if not entry:
        return ""
    rows = ["| condition | LOCO UAR restricted, mean ± std (min–max) |", "|---|---|", "| clean | %s |" % _pm(entry["mean"]["uar_restricted"])]
    rows += ["| %s | %s |" % (name, _pm(entry["mean"][name])) for name in recipes.CONDITIONS if name in entry["mean"]]
    return ("## Real rooms (LOCO, every held-out clip altered)\n\nNoise: white/pink/brown at 10 dB SNR to the speech. "
            "Reverberation: a synthetic room impulse response (exponentially decaying noise after a direct path, RT60 "
            "0.6 s). Telephone: 300 Hz high-pass, 8 kHz sampling, resampled to 16 kHz. Level: −20 dB, and +20 dB with "
            "int16 clipping.\n\n%s\n" % "\n".join(rows))


def _speakers_section(entry: dict | None, recipes: dict | None = None) -> str:
    if not entry:
        others = ["`%s` %s (RAVDESS %s; %d of %d folds)" % (
            name, _pm(e["speakers"]["mean"]["uar_restricted"]), _pct(e["speakers"]["per_corpus"]["ravdess"]["uar_restricted"]),
            len(e["speakers"]["folds_done"]), len(e["speakers"]["folds"]))
            for name, e in (recipes or {}).items() if "speakers" in e and "ravdess" in e["speakers"].get("per_corpus", {})]
        return ("## Speaker-grouped CV of the pooled corpora\n\nNot run for this recipe yet%s.\n"
                % ("; run for the recipes before it: " + "; ".join(others) if others else ""))
    rows = ["| corpus | UAR restricted | UAR unrestricted |", "|---|---|---|"]
    rows += ["| %s | %s | %s |" % (n, _pct(s["uar_restricted"]), _pct(s["uar_unrestricted"])) for n, s in entry["per_corpus"].items()]
    return ("## Speaker-grouped CV of the pooled corpora (folds done: %s)\n\n%s\n\nMean over corpora %s. RAVDESS here is "
            "its 7 classes, speakers unseen, the other corpora in training.\n" % (
                ", ".join(entry["folds_done"]), "\n".join(rows), _pm(entry["mean"]["uar_restricted"])))


def _calibration_section(entry: dict | None, card: dict) -> str:
    if not entry:
        return ""
    calibration = entry["calibration"]
    rows = ["| held-out corpus | T fitted without it | ECE | ECE at T 1 | mean confidence | accuracy | coverage / accuracy at 0.5 |",
            "|---|---|---|---|---|---|---|"]
    for name, c in calibration["per_corpus"].items():
        cover = c["coverage"].get("0.50", [0, 0, 0])
        rows.append("| %s | %.2f | %.3f | %.3f | %.2f | %.2f | %.2f / %.2f |" % (
            name, c["temperature_fitted_without"], c["ece"], c["ece_at_1"], c["mean_confidence"], c["accuracy"], cover[0], cover[1]))
    return ("## Calibration and abstention\n\nThe shipped temperature %.2f is fitted (clip NLL) on every LOCO prediction; each "
            "corpus's ECE below uses a temperature fitted on the other four only. Predictions unrestricted (the daemon "
            "does not know a voice's corpus).\n\n%s\n" % (card["temperature"], "\n".join(rows)))


def _whisper_section(entry: dict | None, span: dict | None = None) -> str:
    if not entry:
        return ""
    span_note = ""
    if span:
        span_note = ("\nPooled over each clip's whole speech span instead of each 2 s window (`--pooling span`, one vector per "
                     "clip), the plain head scores %s (%s): a longer context does not lift the encoder on unseen corpora, "
                     "and it stays below serd-emotion's CNN on the same folds, so it is neither a better backend nor a teacher "
                     "to distil from.\n" % (_pm(span["mean"]["plain"]), ", ".join("%s %s" % (n, _pct(s["plain"]))
                                                                                for n, s in span["per_corpus"].items())))
    rows = ["| held-out corpus | plain head | centred, balanced session | centred, one-emotion sessions |", "|---|---|---|---|"]
    rows += ["| %s | %s | %s | %s |" % (n, _pct(s["plain"]), _pct(s["centred_balanced"]), _pct(s["centred_one_emotion_sessions"]))
             for n, s in entry["per_corpus"].items()]
    mean = entry["mean"]
    return ("## Does speaker centring hold? (Whisper tiny.en head, LOCO)\n\n`python -m tools.study.whisper_loco`: %s. Centred = "
            "each voice's mean feature vector subtracted, over all its clips (every emotion equally) or over sessions where one "
            "emotion makes 80 %% of the clips.\n\n%s\n\nMean: plain %s, balanced %s, one-emotion %s. Centring gains on "
            "balanced sessions and loses 8–13 points against the plain head when one emotion dominates, as in a real "
            "session: serd-emotion 2.x and the opt-in serd-whisper 2.0.0 backend (the plain head) centre nothing.\n"
            % (entry["description"], "\n".join(rows), _pm(mean["plain"]), _pm(mean["centred_balanced"]),
               _pm(mean["centred_one_emotion_sessions"]))) + span_note


def _model_section(card: dict) -> str:
    m = card["metrics"]
    return ("## The network\n\n%d parameters, int8 %d bytes (float %d), invoke median %.3f ms / p95 %.3f ms on one thread "
            "(%s); int8 and float agree on the top label of %.1f %% of training windows.\n" % (
                m["parameters"], m["size_bytes"], m["float_size_bytes"], m["invoke_ms_median"], m["invoke_ms_p95"],
                m["invoke_cpu"], 100 * m["train_window_int8_float_top1_agreement"]))


def _history_section() -> str:
    return "## History\n\n" + HISTORY


def _limits_section() -> str:
    return ("## Limits\n\n- Every corpus is acted speech; natural, spontaneous emotion is quieter and more mixed, and no "
            "corpus here measures it. Expect lower figures there.\n- Five corpora, 66 speakers, three languages: voices, "
            "languages and microphones far from these are not measured.\n- Labels are the actors' intended emotions, not "
            "listeners' judgements.\n- No speaker normalisation: a sustained emotion is not normalised away, and a voice "
            "far from the training voices is not corrected either.\n")


def _minutes_on_two_cores(seconds_by_fold: dict) -> int:
    """Wall minutes of the folds run two at a time (their measured training seconds)."""
    return round(sum(seconds_by_fold.values()) / 2 / 60)


def _reproduce_section(card: dict, study: dict) -> str:
    folds = study.get("loco", {}).get("train_seconds", {})
    speakers = study.get("speakers", {}).get("train_seconds", {})
    timing = "LOCO ≈%d min on 2 cores, the final network about one fold more" % _minutes_on_two_cores(folds) if folds else "LOCO + final network"
    if speakers:
        timing += ", speaker CV ≈%d min more" % _minutes_on_two_cores(speakers)
    return ("## Reproduce\n\n```\npython -m tools.study.loco --recipe %s --with-final   # %s\n"
            "make model   # the shipped files: serd-emotion (reusing the final network), then serd-whisper (tools.study.whisper_loco)\n```\n"
            % (card["training"]["recipe"], timing))
