"""How much noise each [vad] gate lets through, and how much of the corpora's speech it keeps.

    python -m tools.study.noise_gate [--clips-per-corpus 60] [--noise-s 60] [--min-snr-db 12] [--out docs/noise_gate.json]

Noise: white, pink and brown (generated, seeded) at two levels, and babble (8 speakers of four corpora,
each speaker's clips end to end, summed) at two low levels; each --noise-s long. Noise passed = the
share of noise time inside the gate's segments. Speech: --clips-per-corpus clips of every corpus
under ../shared/corpora, drawn seeded; speech time = the time webrtcvad alone (gate webrtc) puts in
segments on the clean clip; speech passed = the share of that time the gate under test also puts in
segments. CPU = process time of the gate alone per audio second. The audio is read in place, never copied.
--gates measures only some gates (webrtc, the speech time's reference, always runs); with --min-snr-db
every gate is measured again with that [vad] min_snr_db, as "GATE+snr".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from serd.audio import load_audio
from serd.manifest import read_manifests
from serd.noisegate import GATES
from serd.vad import VadGate, VadParams
from tools.model.corpora import default_manifests

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
COLOURED_LEVELS_DBFS = (-30.0, -20.0)
BABBLE_LEVELS_DBFS = (-55.0, -50.0, -45.0, -40.0)
BABBLE_SPEAKERS = 8
LOWEST_NOISE_HZ = 20.0
SEED = 24
DEFAULT_OUT = Path("docs/noise_gate.json")
SNR_SUFFIX = "+snr"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the measurement."""
    parser = argparse.ArgumentParser(prog="python -m tools.study.noise_gate", description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-corpus", type=int, default=60, help="speech clips drawn from each corpus")
    parser.add_argument("--noise-s", type=float, default=60.0, help="seconds of each noise")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--gates", default=",".join(GATES), help="comma-separated gates to measure (default: all)")
    parser.add_argument("--min-snr-db", type=float, default=0.0, help="also measure every gate with this [vad] min_snr_db")
    args = parser.parse_args(argv)
    args.gates = tuple(dict.fromkeys(["webrtc"] + [g.strip() for g in args.gates.split(",") if g.strip()]))
    unknown = [gate for gate in args.gates if gate not in GATES]
    if unknown:
        parser.error("unknown gate %s (known: %s)" % (", ".join(unknown), ", ".join(GATES)))
    if args.min_snr_db < 0:
        parser.error("--min-snr-db must not be negative")
    if args.min_snr_db > 0:
        args.gates += tuple(gate + SNR_SUFFIX for gate in args.gates)
    return args


def gate_params(base: VadParams, name: str, min_snr_db: float) -> VadParams:
    """The parameters of a measured configuration: a gate, or a gate with the level check (GATE+snr)."""
    if name.endswith(SNR_SUFFIX):
        return replace(base, gate=name[: -len(SNR_SUFFIX)], min_snr_db=min_snr_db)
    return replace(base, gate=name)


def at_level(samples: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Float samples scaled to an RMS of level_dbfs (full scale 1.0), as int16."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1.0
    scaled = samples / rms * 10.0 ** (level_dbfs / 20.0)
    return np.clip(np.round(scaled * 32767.0), -32768, 32767).astype(np.int16)


def coloured_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (power 1/f) or brown (power 1/f^2) noise, unscaled float."""
    white = rng.standard_normal(n_samples)
    if kind == "white":
        return white
    exponent = {"pink": 0.5, "brown": 1.0}[kind]
    spectrum = np.fft.rfft(white)
    freqs_hz = np.maximum(np.fft.rfftfreq(n_samples, 1.0 / SAMPLE_RATE_HZ), LOWEST_NOISE_HZ)
    return np.fft.irfft(spectrum / freqs_hz**exponent, n_samples)


def babble(clips: list, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """BABBLE_SPEAKERS voices (two per corpus where it can), each its clips end to end, summed at equal RMS."""
    by_speaker: dict[str, list] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    corpora = sorted({speaker.split(":", 1)[0] for speaker in by_speaker})
    chosen: list[str] = []
    for round_ in range(BABBLE_SPEAKERS):
        corpus = corpora[round_ % len(corpora)]
        candidates = sorted(s for s in by_speaker if s.startswith(corpus + ":") and s not in chosen)
        chosen.append(candidates[int(rng.integers(len(candidates)))])
    mix = np.zeros(n_samples)
    for speaker in chosen:
        voice = one_voice(by_speaker[speaker], n_samples, rng)
        mix += voice / (np.sqrt(np.mean(voice**2)) or 1.0)
    return mix, chosen


def one_voice(clips: list, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """One speaker talking without pause: the speech (what gate webrtc passes) of the speaker's clips
    in random order, end to end, until n_samples."""
    parts, total = [], 0
    while total < n_samples:
        clip = clips[int(rng.integers(len(clips)))]
        audio = load_audio(clip.path)
        spans, _, _ = segments(audio, VadParams(gate="webrtc"))
        parts += [audio[start:end].astype(np.float64) for start, end in spans]
        total += sum(end - start for start, end in spans)
    return np.concatenate(parts)[:n_samples]


def segments(samples: np.ndarray, params: VadParams) -> tuple[list[tuple[int, int]], float, int]:
    """The gate's segments [start, end) on samples, its process CPU seconds and its Silero calls."""
    gate = VadGate(params, SAMPLE_RATE_HZ)
    started = time.process_time()
    found, start = [], 0
    for boundary in gate.push(samples) + gate.flush():
        if boundary.kind == "start":
            start = boundary.sample_index
        else:
            found.append((start, boundary.sample_index))
    return found, time.process_time() - started, gate.silero_calls


def covered(spans: list[tuple[int, int]], n_samples: int) -> np.ndarray:
    """A boolean mask of the samples inside spans."""
    mask = np.zeros(n_samples, dtype=bool)
    for start, end in spans:
        mask[start:end] = True
    return mask


def noise_results(noises: dict[str, np.ndarray], base: VadParams, gates: tuple[str, ...], min_snr_db: float) -> dict:
    """Per noise and gate: the share of noise time in segments, segment count, CPU per audio second."""
    results = {}
    for name, samples in noises.items():
        results[name] = {}
        for gate in gates:
            spans, cpu_s, calls = segments(samples, gate_params(base, gate, min_snr_db))
            passed = covered(spans, len(samples)).mean()
            results[name][gate] = {"noise_passed": round(float(passed), 4), "segments": len(spans),
                                   "cpu_s_per_audio_s": round(cpu_s * SAMPLE_RATE_HZ / len(samples), 5),
                                   "silero_calls": calls}
            log.info("%s gate %s: %.1f %% of noise passed (%d segments)", name, gate, 100 * passed, len(spans))
    return results


def speech_results(clips: list, base: VadParams, gates: tuple[str, ...], min_snr_db: float) -> dict:
    """Per corpus: webrtcvad's speech time on the clean clips, the share each other gate keeps, CPU."""
    totals: dict[str, dict[str, float]] = {}
    for clip in clips:
        samples = load_audio(clip.path)
        reference, webrtc_cpu_s, _ = segments(samples, replace(base, gate="webrtc"))
        speech = covered(reference, len(samples))
        row = totals.setdefault(clip.speaker.split(":", 1)[0], dict.fromkeys(
            ["clips", "audio_s", "speech_s", "webrtc_cpu_s"] + ["%s_%s" % (g, k) for g in gates[1:] for k in ("passed_s", "cpu_s")], 0.0))
        row["clips"] += 1
        row["audio_s"] += len(samples) / SAMPLE_RATE_HZ
        row["speech_s"] += speech.sum() / SAMPLE_RATE_HZ
        row["webrtc_cpu_s"] += webrtc_cpu_s
        for gate in gates[1:]:
            tested, cpu_s, _ = segments(samples, gate_params(base, gate, min_snr_db))
            row[gate + "_passed_s"] += (speech & covered(tested, len(samples))).sum() / SAMPLE_RATE_HZ
            row[gate + "_cpu_s"] += cpu_s
    everything = {key: sum(row[key] for row in totals.values()) for key in next(iter(totals.values()))}
    return {**{corpus: summarise(row, gates) for corpus, row in sorted(totals.items())}, "all corpora": summarise(everything, gates)}


def summarise(row: dict[str, float], gates: tuple[str, ...]) -> dict:
    """A corpus's speech totals as the results file reports them."""
    return {"clips": int(row["clips"]), "speech_s": round(row["speech_s"], 1),
            "speech_passed": {gate: round(row[gate + "_passed_s"] / max(row["speech_s"], 1e-9), 4) for gate in gates[1:]},
            "cpu_s_per_audio_s": {gate: round(row[gate + "_cpu_s"] / row["audio_s"], 5) for gate in gates}}


def draw_clips(clips: list, per_corpus: int, rng: np.random.Generator) -> list:
    """per_corpus clips of each corpus, drawn without replacement."""
    by_corpus: dict[str, list] = {}
    for clip in clips:
        by_corpus.setdefault(clip.speaker.split(":", 1)[0], []).append(clip)
    drawn = []
    for corpus in sorted(by_corpus):
        pool = by_corpus[corpus]
        drawn += [pool[i] for i in sorted(rng.choice(len(pool), min(per_corpus, len(pool)), replace=False))]
    return drawn


def main(argv: list[str] | None = None) -> int:
    """Measure both gates on noise and speech; write the results JSON."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    rng = np.random.default_rng(SEED)
    clips = read_manifests(default_manifests())
    n_samples = int(args.noise_s * SAMPLE_RATE_HZ)
    noises = {}
    for kind in ("white", "pink", "brown"):
        shaped = coloured_noise(kind, n_samples, rng)
        noises.update({"%s %+.0f dBFS" % (kind, level): at_level(shaped, level) for level in COLOURED_LEVELS_DBFS})
    mix, speakers = babble(clips, n_samples, rng)
    noises.update({"babble %+.0f dBFS" % level: at_level(mix, level) for level in BABBLE_LEVELS_DBFS})
    base = VadParams()
    given = sys.argv[1:] if argv is None else argv
    results = {"command": " ".join(["python -m tools.study.noise_gate"] + list(given)), "noise_s": args.noise_s, "babble_speakers": speakers,
               "speech_time": "what gate webrtc alone puts in segments on the clean clips",
               "clips_per_corpus": args.clips_per_corpus, "gates": list(args.gates),
               "min_snr_db": args.min_snr_db,
               "noise": noise_results(noises, base, args.gates, args.min_snr_db),
               "speech": speech_results(draw_clips(clips, args.clips_per_corpus, rng), base, args.gates, args.min_snr_db)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
