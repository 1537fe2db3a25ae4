"""Files shipped with the library: the LRW vocabulary (500 words, sorted; class index = line number)."""

from pathlib import Path

LRW_WORDS_FILE = Path(__file__).with_name("lrw_500_words.txt")


def lrw_words() -> list[str]:
    return [w.strip() for w in LRW_WORDS_FILE.read_text().splitlines() if w.strip()]
