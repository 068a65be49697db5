#!/usr/bin/env python3
"""tag_errors.py - where a tagger's errors are (docs/QUALITY.md).

Usage:
    bench/tag_errors.py MODEL HELD.tsv TRAIN.tsv [--lstm build/lstm] [--top N]

Runs `lstm predict MODEL` on the sentences of HELD.tsv (word<TAB>tag lines,
a blank line after each sentence), compares each predicted tag with the
file's, and prints the accuracy by how often the word's lowercased form is
in TRAIN.tsv (5 times or more, 1 to 4, never), then the N commonest
confusions (gold -> predicted; 12, 0 for all) on the words never seen and
on all words.
Standard library only.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile


def sentences(path):
    out, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if cur:
                    out.append(cur)
                cur = []
                continue
            word, tag = line.split("\t")
            cur.append((word.strip(), tag.strip()))
    if cur:
        out.append(cur)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("held")
    ap.add_argument("train")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--lstm", default=os.path.join(root, "build", "lstm"))
    ap.add_argument("--top", type=int, default=12, help="confusions listed (0: all)")
    a = ap.parse_args()
    held = sentences(a.held)
    seen = collections.Counter(w.lower() for s in sentences(a.train) for w, _ in s)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(" ".join(w for w, _ in s) for s in held) + "\n")
        text = f.name
    try:
        out = subprocess.run([a.lstm, "predict", a.model, text], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    finally:
        os.unlink(text)
    if len(out) != len(held):
        sys.exit("tag_errors.py: %d sentences in, %d lines out" % (len(held), len(out)))
    total, wrong = collections.Counter(), collections.Counter()
    conf_unseen, conf_all = collections.Counter(), collections.Counter()
    for sent, line in zip(held, out):
        pred = [tok.rsplit("/", 1)[1] for tok in line.split()]
        if len(pred) != len(sent):
            sys.exit("tag_errors.py: a sentence of %d words came back with %d tags"
                     % (len(sent), len(pred)))
        for (word, gold), tag in zip(sent, pred):
            n = seen[word.lower()]
            band = "seen 5 times or more" if n >= 5 else "seen 1 to 4 times" if n else "never seen"
            total[band] += 1
            if tag != gold:
                wrong[band] += 1
                conf_all[(gold, tag)] += 1
                if not n:
                    conf_unseen[(gold, tag)] += 1
    words, errors = sum(total.values()), sum(wrong.values())
    print("%d words, %d errors, accuracy %.5f" % (words, errors, 1 - errors / words))
    print("%-22s %7s %9s %7s" % ("words", "share", "accuracy", "errors"))
    for band in ("seen 5 times or more", "seen 1 to 4 times", "never seen"):
        if total[band]:
            print("%-22s %6.1f%% %9.4f %7d" % (band, 100 * total[band] / words,
                                               1 - wrong[band] / total[band], wrong[band]))
    for name, conf in (("never seen", conf_unseen), ("all words", conf_all)):
        print("confusions on %s (gold -> predicted): %s" % (name, ", ".join(
            "%s->%s %d" % (g, p, c) for (g, p), c in conf.most_common(a.top or None))))


if __name__ == "__main__":
    main()
