"""Characters per token of natural and obfuscated text on the embedded model's tokenizer
(SmolLM2-135M), to set ``tenants[].prompt_guard.min_chars_per_token``.

    python -m bench.prompt_guard [--cache DIR] [--thresholds 2.0,2.5,3.0]

Natural text: this repository's English prose (README, DESIGN; technical, with identifiers),
the licence texts of the installed packages, its Python source, ledger-record JSON, and short
hand-written passages in German, Spanish, Russian and Chinese (few, so indicative only).
Obfuscated: the English prose as base64, hex, rot13, a Caesar shift of 3, leetspeak, and
prose carrying a 400-character base64 payload. Each sample is judged as the guard judges a
message: the lowest ratio over its 256-character windows (``prompt_guard.chars_per_token``).
The table gives each kind's mean ratio, the lowest and highest sample, and the share refused
at each threshold: a refused natural sample is a false positive, a passed obfuscated one a miss.

The tokenizer is read from the packaged GGUF once (about 30 s) and cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import json
import re
import statistics
import sysconfig
from collections.abc import Callable
from pathlib import Path

from fairgate.gateway.prompt_guard import chars_per_token

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / ".cache" / "smollm2-tokenizer"
SAMPLE_CHARS = 1200
# Cyrillic and CJK text on purpose: natural text the guard must be judged on.
# ruff: noqa: RUF001
LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
OTHER_LANGUAGES = {
    "German": (
        "Die Stadt lag still unter dem ersten Schnee des Jahres. In den engen Gassen der "
        "Altstadt brannten die Laternen schon am frühen Nachmittag, und aus den Fenstern der "
        "Bäckerei duftete es nach frischem Brot und Zimt. Die Kinder liefen lachend zur "
        "Schule, während die älteren Leute langsam und vorsichtig über das glatte Pflaster "
        "gingen. Niemand hatte so früh mit dem Winter gerechnet, aber alle schienen sich "
        "darüber zu freuen, als hätte die Stadt auf genau diesen Tag gewartet."
    ),
    "Spanish": (
        "El pueblo despertaba despacio cada mañana, cuando el sol asomaba por detrás de las "
        "montañas y pintaba de naranja los tejados. Los pescadores volvían del mar con las "
        "redes llenas, y en la plaza las mujeres compraban fruta y conversaban sobre las "
        "noticias del día. Los niños jugaban al fútbol junto a la iglesia hasta que la "
        "campana anunciaba la hora de comer, y entonces todo quedaba en silencio durante un "
        "rato, como si el pueblo entero se tomara un descanso."
    ),
    "Russian": (
        "Город медленно просыпался под звуки первых трамваев. На улицах появлялись люди, "
        "спешившие на работу, а в маленьких кафе уже пахло свежим кофе и горячими булочками. "
        "Старик в сером пальто каждый день кормил голубей у фонтана и рассказывал прохожим "
        "истории о том, каким был этот город много лет назад, когда он сам был ещё молод."
    ),
    "Chinese": (
        "清晨的城市慢慢醒来，街道上的行人越来越多。小店里飘出豆浆和油条的香味，孩子们背着书包"
        "走向学校，老人们在公园里打太极拳。天空很蓝，风很轻，一切都显得那么平静而美好。人们"
        "一边走一边聊天，谈论着天气、工作和家里的事情，仿佛这只是又一个普通的日子。"
    ),
}


def smollm2_tokenizer(cache: Path = DEFAULT_CACHE) -> Callable[[str], list[int]]:
    """SmolLM2-135M's tokenizer (``encode`` without special tokens), from the cache or read
    once from the packaged GGUF."""
    from transformers import AutoTokenizer

    folder = cache / "tokenizer"
    if not (folder / "tokenizer.json").exists():
        from fairgate.replicas.models import smollm2_gguf_path

        gguf = smollm2_gguf_path(cache, print)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(str(folder))
    return lambda text: list(loaded.encode(text, add_special_tokens=False))


def _chunks(text: str, size: int = SAMPLE_CHARS) -> list[str]:
    text = re.sub(r"\s+", " ", text).strip()
    return [text[i : i + size] for i in range(0, len(text) - size // 2, size)]


def english_prose() -> list[str]:
    paragraphs = []
    for name in ("README.md", "DESIGN.md"):
        path = REPO / name if (REPO / name).exists() else REPO.parent / "shared" / name
        if not path.exists():
            continue
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for block in text.split("\n\n"):
            block = block.strip()
            if len(block) > 200 and not block.startswith(("|", "#", "-", "*", "    ", ">")):
                paragraphs.append(block)
    return _chunks(" ".join(paragraphs))


def license_prose() -> list[str]:
    """Licence texts of the installed packages: plain English, not written for this bench."""
    site = Path(sysconfig.get_paths()["purelib"])
    texts, seen = [], set()
    for path in sorted(site.glob("*.dist-info/licenses/LICENSE*"))[:60]:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return _chunks(" ".join(texts))[:80]


def python_source() -> list[str]:
    files = sorted((REPO / "gateway").glob("*.py"))[:8]
    return _chunks("\n".join(f.read_text(encoding="utf-8") for f in files))[:40]


def ledger_json() -> list[str]:
    record = {
        "chain": "default", "seq": 41, "request_id": "req_5f1c0e2a9b7d4c3e8f6a1b2c3d4e5f60",
        "tenant": "alice", "model": "smollm2", "status": "ok", "status_code": 200,
        "usage": {"prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908,
                  "prompt_tokens_details": {"cached_tokens": 768},
                  "completion_tokens_details": {"reasoning_tokens": 64}},
        "started_at": "2026-12-02T00:31:44.250000Z", "finished_at": "2026-12-02T00:31:45.1Z",
    }  # fmt: skip
    return _chunks(json.dumps([dict(record, seq=n) for n in range(12)], indent=1))


def caesar(text: str, shift: int = 3) -> str:
    def move(c: str) -> str:
        if "a" <= c <= "z":
            return chr((ord(c) - 97 + shift) % 26 + 97)
        if "A" <= c <= "Z":
            return chr((ord(c) - 65 + shift) % 26 + 65)
        return c

    return "".join(move(c) for c in text)


def embedded_payload(text: str) -> str:
    payload = base64.b64encode(text[:300].encode()).decode()[:400]
    middle = len(text) // 2
    return text[:middle] + " " + payload + " " + text[middle:]


def samples() -> dict[str, list[str]]:
    prose = english_prose()
    kinds: dict[str, list[str]] = {
        "English prose (repo docs)": prose,
        "English prose (package licences)": license_prose(),
        "Python source": python_source(),
        "JSON (ledger records)": ledger_json(),
    }
    for language, text in OTHER_LANGUAGES.items():
        kinds[f"{language} prose"] = [text]
    kinds.update(
        {
            "base64": [base64.b64encode(t.encode()).decode() for t in prose],
            "hex": [t.encode().hex() for t in prose],
            "rot13": [codecs.encode(t, "rot13") for t in prose],
            "Caesar +3": [caesar(t) for t in prose],
            "leetspeak": [t.lower().translate(LEET) for t in prose],
            "prose + 400-char base64 payload": [embedded_payload(t) for t in prose],
        }
    )
    return kinds


NATURAL = 8  # the first kinds above are natural text; the rest are obfuscated


def table(encode: Callable[[str], list[int]], thresholds: list[float]) -> str:
    head = "| text | samples | chars/token mean | lowest | highest | " + " | ".join(
        f"refused at {t:g}" for t in thresholds
    )
    lines = [head + " |", "|" + "---|" * (5 + len(thresholds))]
    for index, (kind, texts) in enumerate(samples().items()):
        ratios = [r for r in (chars_per_token(t, encode) for t in texts) if r is not None]
        if not ratios:
            continue
        refused = [sum(r < t for r in ratios) / len(ratios) for t in thresholds]
        label = kind if index < NATURAL else f"*{kind}*"
        lines.append(
            f"| {label} | {len(ratios)} | {statistics.fmean(ratios):.2f} | {min(ratios):.2f} | "
            f"{max(ratios):.2f} | " + " | ".join(f"{share:.0%}" for share in refused) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--thresholds", default="1.5,2.0,2.5,3.0")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print(table(smollm2_tokenizer(args.cache), thresholds))
    print("\n(natural text in plain type, obfuscated in italics; the ratio is the lowest over")
    print(" each sample's 256-character windows, as the guard computes it)")


if __name__ == "__main__":
    main()
