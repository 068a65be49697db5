#!/usr/bin/python3
"""torch_tasks.py - the PyTorch side of the task comparison: trains the same
models as `lstm train lm|classify|tag`, with the same data, tokenizer, features,
vocabularies, batches, optimizer, learning-rate schedule, clipping, validation,
best-on-valid selection, early stopping and time-limit logic, in PyTorch 1.13
(CPU), so that the two can be run side by side for the same wall-clock budget.

    bench/torch_tasks.py lm --train brown-text/train.txt --valid brown-text/valid.txt \
        --time-limit 600 --threads 2 --log torch-lm.log

The options and their defaults are those of `lstm train TASK` (tools/cmd_train.c,
the defaults of each task in src/tasks/task_*.c, the common ones in src/tasks/model.c and train.c). --out is
accepted (so that the same command line works for both) but nothing is saved: the
only file written is the optional --log (JSON lines, the same events and fields as
lstm train's). The last line on stdout is one JSON object with the result.
Not mirrored: the moving average of the weights that lstm validates and saves
(--ema, issue 15's defaults for lm and classify); this script validates the
weights it trains, as lstm does with --ema 0.

The recipe, as in the C code:
  lm:       byte ids -> embedding -> dropout -> LSTM -> dropout -> linear -> CE;
            B parallel streams over the training bytes (contiguous segments), T-step
            unrolls, the state carried (detached) between unrolls and reset to zero
            at the start of each epoch; validation with 64 streams, each carrying its
            state, in chunks of 256 steps, bits per char = mean NLL / ln 2.
  classify: tokens (words or bytes, the first --max-length) -> embedding -> dropout
            -> (Bi)LSTM over the real steps -> dropout -> mean over the real steps
            -> linear -> CE; accuracy on valid.
  tag:      [word | suffix1..5 | shape | prefix1..4] embeddings concatenated -> dropout -> BiLSTM
            -> dropout -> linear -> CE over the real tokens; token accuracy, and the
            accuracy on words whose lowercased form is not in the word vocabulary.
  The LSTM of classify and tag runs over padded batches by default, with the reverse
  direction over each sequence reversed within its length (exactly what a packed
  sequence computes, ~4x faster than PyTorch 1.13's packed CPU backward on 400-token
  texts); --rnn packed uses nn.LSTM on a PackedSequence instead (see TaskModel).
  Batches (classify, tag): shuffle, sort by length within pools of 50 batches, cut
  into batches, shuffle the batches (the same xoshiro256** stream as lstm, so the
  batch order is lstm's own). Adam, linear warm-up then cosine decay to lr*lr_min
  over the planned steps or the time limit, whichever ends the run first, gradient
  clipping by global norm, validation after each epoch (lm: also every
  --valid-every steps), the best model on valid kept, early stopping after
  --patience validations without a new best, and training stopped in time for a
  last validation within --time-limit (the clock starts after the data is read
  and the model built, as in lstm).

Tuned as a careful user would run it: OMP_WAIT_POLICY=PASSIVE (PyTorch's OpenMP
threads otherwise spin against OpenBLAS's own threads) and glibc's malloc told to
keep freed memory (mmap and trim thresholds, top pad). Both must be in the
environment before the process starts, so the script re-executes itself with them
when they are missing; a value already set is kept.
"""
import os
import sys

TUNED_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc's largest allowed value
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}

if any(k not in os.environ for k in TUNED_ENV):
    for k, v in TUNED_ENV.items():
        os.environ.setdefault(k, v)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from itertools import islice  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence, pad_sequence  # noqa: E402

PAD_ID, UNK_ID = 0, 1
SPECIALS = (b"<pad>", b"<unk>")
M64 = (1 << 64) - 1

# ---------------------------------------------------------------------------
# Defaults (lstm_model_defaults, lstm_train_defaults, lstm_optim_defaults).

MODEL_DEFAULTS = {
    "lm": dict(embedding=64, hidden=512, layers=2, bidirectional=0, dropout=0.0,
               vocab_size=0, min_count=0, max_length=0),
    "classify": dict(embedding=64, hidden=128, layers=1, bidirectional=1, dropout=0.3,
                     vocab_size=30000, min_count=2, max_length=800),
    "tag": dict(embedding=100, hidden=128, layers=1, bidirectional=1, dropout=0.3,
                vocab_size=0, min_count=1, max_length=0),
}
TRAIN_COMMON = dict(batch=32, seq_len=100, lr=2e-3, beta2=0.999, lr_min=0.05, decay=0.5, clip=5.0,
                    warmup=0, patience=0, valid_every=0, epochs=20, log_every=50)
TRAIN_DEFAULTS = {
    "lm": dict(TRAIN_COMMON, epochs=3, batch=32, seq_len=50, lr=4.5e-3, beta2=0.99, warmup=100, clip=1.0,
               valid_every=4000),
    "classify": dict(TRAIN_COMMON, epochs=20, patience=5, lr=2e-3, log_every=20),
    "tag": dict(TRAIN_COMMON, epochs=20, patience=5, lr=2e-3),
}
OPTIM_LR = {"sgd": 1e-2, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-2, "adadelta": 1.0}
VALID_STREAMS = 64  # lm validation streams
VALID_BATCH = 64    # classify/tag validation batch

# ---------------------------------------------------------------------------
# xoshiro256** seeded with splitmix64 (src/objects/rng.c), for lstm's batch order.


class Rng:
    def __init__(self, seed):
        x = seed & M64
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            s.append(z ^ (z >> 31))
        self.s = s

    def next(self):
        s0, s1, s2, s3 = self.s
        x = (s1 * 5) & M64
        result = ((((x << 7) | (x >> 57)) & M64) * 9) & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & M64
        self.s = [s0, s1, s2, s3]
        return result

    def below(self, n):
        limit = M64 - M64 % n
        while True:
            r = self.next()
            if r < limit:
                return r % n


# ---------------------------------------------------------------------------
# Data (src/tasks/task_*.c): lm raw bytes; classify fastText lines; tag word<TAB>tag.


def read_lines(path):
    """Lines as lstm's line reader sees them: split at \\n, one \\r before it dropped."""
    with open(path, "rb") as f:
        buf = f.read()
    lines = buf.split(b"\n")
    if buf.endswith(b"\n") or not buf:
        lines.pop()  # no line after the last \n
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def is_blank(s):
    return not s.strip(b" \t")


def read_classify(path):
    texts, labels, names, index = [], [], [], {}
    for no, s in enumerate(read_lines(path), 1):
        if is_blank(s):
            continue
        if not s.startswith(b"__label__"):
            sys.exit(f"{path}: line {no}: expected __label__NAME at the start of the line")
        e = 9
        while e < len(s) and s[e] not in b" \t":
            e += 1
        t = e
        while t < len(s) and s[t] in b" \t":
            t += 1
        if e == 9 or t == len(s):
            sys.exit(f"{path}: line {no}: expected __label__NAME text")
        name = s[9:e]
        if name not in index:
            index[name] = len(names)
            names.append(name)
        texts.append(s[t:])
        labels.append(index[name])
    return texts, labels, names


def read_tag(path):
    sents, tags, names, index = [], [], [], {}
    words, wtags = [], []
    for no, s in enumerate(read_lines(path), 1):
        if is_blank(s):
            if words:
                sents.append(words)
                tags.append(wtags)
                words, wtags = [], []
            continue
        if s.count(b"\t") != 1:
            sys.exit(f"{path}: line {no}: expected word<TAB>tag")
        w, tg = s.split(b"\t")
        if not w or not tg:
            sys.exit(f"{path}: line {no}: empty word or tag")
        if tg not in index:
            index[tg] = len(names)
            names.append(tg)
        words.append(w)
        wtags.append(index[tg])
    if words:
        sents.append(words)
        tags.append(wtags)
    return sents, tags, names


# ---------------------------------------------------------------------------
# Tokens, features and vocabularies (src/tasks/task_*.c, src/tasks/vocab.c).

WORD_RE = re.compile(rb"[A-Za-z0-9\x80-\xff]+|[^ \t\n\r\x0b\x0c]")


def tokenize(text, byte_tokens, max_length):
    """lstm's tokenizer: with words, maximal runs of letters, digits and non-ASCII
    bytes (lowercased, cut to 64 bytes) and every other non-space byte on its own;
    with bytes, every byte. At most max_length tokens (0: all)."""
    if byte_tokens:
        if max_length:
            text = text[:max_length]
        return [text[i:i + 1] for i in range(len(text))]
    it = (m.group().lower()[:64] for m in WORD_RE.finditer(text))
    return list(islice(it, max_length)) if max_length else list(it)


def word_shape(w):
    up = low = dig = hi = hyph = other = 0
    for ch in w:
        if 65 <= ch <= 90:
            up += 1
        elif 97 <= ch <= 122:
            low += 1
        elif 48 <= ch <= 57:
            dig += 1
        elif ch >= 0x80:
            hi += 1
        elif ch == 45:
            hyph += 1
        else:
            other += 1
    if dig and not up and not low and not hi:
        out = b"0"
    elif up and not low and len(w) > 1:
        out = b"AA"
    elif 65 <= w[0] <= 90:
        out = b"Aa"
    elif low or hi:
        out = b"a"
    else:
        out = b"."
    if dig and (up or low or hi):
        out += b"0"
    if hyph:
        out += b"-"
    if other and (up or low or dig):
        out += b"."
    return out


# (name, kind, k, dim or None for --embedding)
# (lstm's defaults since 2026-12-01: --suffixes 5 --prefixes 4, in its order)
TAG_FEATURES = [("word", "word", 0, None), ("suffix1", "suffix", 1, 8), ("suffix2", "suffix", 2, 16),
                ("suffix3", "suffix", 3, 32), ("suffix4", "suffix", 4, 32), ("suffix5", "suffix", 5, 32),
                ("shape", "shape", 0, 8), ("prefix1", "prefix", 1, 8), ("prefix2", "prefix", 2, 16),
                ("prefix3", "prefix", 3, 32), ("prefix4", "prefix", 4, 32)]


def feature_key(kind, k, w):
    if kind == "word":
        return w[:128].lower()
    if kind == "suffix":
        return w[len(w) - min(k, len(w)):].lower()
    if kind == "prefix":
        return w[:k].lower()
    return word_shape(w)


def vocab_prune(counts, min_count, max_size):
    """The specials (ids 0, 1), then the entries seen at least min_count times, most
    frequent first, ties in byte order, up to max_size entries in all (0: no limit)."""
    ids = {s: i for i, s in enumerate(SPECIALS)}
    keep = [(c, s) for s, c in counts.items() if c >= min_count and s not in ids]
    keep.sort(key=lambda cs: (-cs[0], cs[1]))
    for _, s in keep:
        if max_size and len(ids) >= max_size:
            break
        ids[s] = len(ids)
    return ids


def count(keys, counts):
    for k in keys:
        counts[k] = counts.get(k, 0) + 1


# ---------------------------------------------------------------------------
# The model.


def reverse_index(lengths, T):
    """(T, B): position t of sequence b reversed within its length (t < length),
    padding left in place. Its own inverse."""
    t = torch.arange(T).unsqueeze(1)
    n = lengths.unsqueeze(0)
    return torch.where(t < n, n - 1 - t, t)


class TaskModel(nn.Module):
    """Embeddings (concatenated) -> dropout -> LSTM -> dropout -> [mean] -> linear.

    The LSTM of classify and tag runs in one of two exact forms (--rnn):
      packed: nn.LSTM over a PackedSequence (the textbook form). PyTorch 1.13's CPU
              backward of packed input is quadratic in the length (each step's
              slice_backward adds a gradient the size of the whole packed input), so
              it is slow on long texts.
      padded: nn.LSTM over the padded batch. A forward direction is exact at the real
              steps as it is (padding only follows them); a backward direction runs
              as a second one-layer nn.LSTM over each sequence reversed within its
              length, reversed back, so it too starts at each sequence's own end.
              Layers are stacked by hand (inter-layer dropout as nn.LSTM's). The
              same parameters (count, shapes, initialisation) and the same numbers
              at the real steps as packed; padded steps are masked out of the loss
              and the mean.
    """

    def __init__(self, task, vocab_sizes, dims, hidden, layers, bidirectional, dropout, nout, rnn="padded",
                 proj=0):
        super().__init__()
        self.task = task
        self.embeddings = nn.ModuleList(nn.Embedding(v, d, padding_idx=PAD_ID)
                                        for v, d in zip(vocab_sizes, dims))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.split = rnn == "padded" and bool(bidirectional)
        if self.split:
            ins = [sum(dims)] + [2 * hidden] * (layers - 1)
            self.fwd = nn.ModuleList(nn.LSTM(i, hidden) for i in ins)
            self.bwd = nn.ModuleList(nn.LSTM(i, hidden) for i in ins)
            self.inter = nn.Dropout(dropout) if dropout > 0 and layers > 1 else nn.Identity()
        else:
            self.lstm = nn.LSTM(sum(dims), hidden, num_layers=layers, bidirectional=bool(bidirectional),
                                dropout=dropout if layers > 1 else 0.0, proj_size=proj)
        self.decoder = nn.Linear((2 if bidirectional else 1) * (proj or hidden), nout)

    def embed(self, ids):  # ids: (..., nfeat)
        if len(self.embeddings) == 1:
            return self.embeddings[0](ids[..., 0])
        return torch.cat([e(ids[..., i]) for i, e in enumerate(self.embeddings)], -1)

    def forward_lm(self, x, state):  # x: (T, B)
        e = self.drop(self.embeddings[0](x))
        y, state = self.lstm(e, state)
        return self.decoder(self.drop(y)), state

    def forward_packed(self, packed_ids, lengths):
        """packed_ids: a PackedSequence of (N, nfeat) ids. Returns the logits: (N, nout)
        in packed order (tag) or (B, nout) (classify)."""
        x = self.drop(self.embed(packed_ids.data))
        out, _ = self.lstm(packed_ids._replace(data=x))
        y = self.drop(out.data)
        if self.task == "tag":
            return self.decoder(y)
        padded, _ = pad_packed_sequence(out._replace(data=y))  # zeros past each length
        pooled = padded.sum(0) / lengths.to(padded.dtype).unsqueeze(1)
        return self.decoder(pooled)

    def forward_padded(self, ids, lengths, mask):
        """ids: (T, B, nfeat) padded; mask: (T, B), true at the real steps. Returns the
        logits: (N, nout) of the real steps in (t, b) order (tag) or (B, nout)."""
        x = self.drop(self.embed(ids))
        if self.split:
            rev = reverse_index(lengths, ids.shape[0]).unsqueeze(2)
            for layer, (f, b) in enumerate(zip(self.fwd, self.bwd)):
                if layer > 0:
                    x = self.inter(x)
                yf, _ = f(x)
                yb, _ = b(x.gather(0, rev.expand_as(x)))
                x = torch.cat([yf, yb.gather(0, rev.expand_as(yb))], 2)
            y = x
        else:
            y, _ = self.lstm(x)
        y = self.drop(y)
        if self.task == "tag":
            return self.decoder(y[mask])
        pooled = (y * mask.unsqueeze(2)).sum(0) / lengths.to(y.dtype).unsqueeze(1)
        return self.decoder(pooled)


# ---------------------------------------------------------------------------
# JSON-lines log (cmd_train.c's log_event: jansson, compact, real precision 7).


def jreal(v):
    if v is None or not math.isfinite(v):
        return "null"
    s = "%.7g" % v
    if "." not in s and "e" not in s:
        s += ".0"
    if "e" in s:
        m, e = s.split("e")
        neg = e.startswith("-")
        e = e.lstrip("+-").lstrip("0") or "0"
        s = m + "e" + ("-" if neg else "") + e
    return s


def jval(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return jreal(v)
    return json.dumps(v)


class Trainer:
    def __init__(self, a):
        self.a = a
        self.task = a.task
        self.lm = a.task == "lm"
        self.log = open(a.log, "a") if a.log else None
        self.last_plain = 0.0
        self.cur_loss = 0.0
        self.cur_tps = 0.0
        self.last_valid = None
        self.metric = "bpc" if self.lm else "accuracy"

    # -- data ---------------------------------------------------------------
    def setup(self):
        a = self.a
        if self.lm:
            with open(a.train, "rb") as f:
                tr = f.read()
            with open(a.valid, "rb") as f:
                va = f.read()
            if not tr:
                sys.exit(f"{a.train}: empty: no text")
            seen = sorted(set(tr))
            vmap = np.full(256, UNK_ID, dtype=np.int64)
            for i, b in enumerate(seen):
                vmap[b] = i + 2
            self.vocab_sizes = [len(seen) + 2]
            self.dims = [a.embedding]
            self.nout = self.vocab_sizes[0]
            ids = vmap[np.frombuffer(tr, dtype=np.uint8)]
            B, T = a.batch, a.seq_len
            seg = len(ids) // B
            if seg < T + 1:
                sys.exit(f"{a.train}: {len(ids)} bytes are too few for {B} streams of {T} steps")
            self.steps_per_epoch = (seg - 1) // T
            # (seg, B): column j is stream j's contiguous segment
            self.stream = torch.from_numpy(np.ascontiguousarray(ids[:B * seg].reshape(B, seg).T))
            self.valid_ids = torch.from_numpy(vmap[np.frombuffer(va, dtype=np.uint8)])
            self.valid_tokens = len(va)
            self.train_bytes = len(tr)
            return
        if a.task == "classify":
            texts, labels, names = read_classify(a.train)
            vtexts, vlabels, vnames = read_classify(a.valid)
            bt, ml = a.tokens == "byte", a.max_length
            toks = [tokenize(t, bt, ml) for t in texts]
            counts = {}
            for ts in toks:
                count(ts, counts)
            vocab = vocab_prune(counts, max(a.min_count, 1), a.vocab_size + 2 if a.vocab_size > 0 else 0)
            self.vocab_sizes, self.dims = [len(vocab)], [a.embedding]
            vtoks = [tokenize(t, bt, ml) for t in vtexts]

            def enc(ts):
                ids = [vocab.get(t, UNK_ID) for t in ts] or [UNK_ID]  # an empty text: one <unk>
                return torch.tensor(ids, dtype=torch.int64).unsqueeze(1)

            self.train_x = [enc(ts) for ts in toks]
            self.valid_x = [enc(ts) for ts in vtoks]
            lmap = {n: i for i, n in enumerate(names)}
            self.train_y = torch.tensor(labels, dtype=torch.int64)
            self.valid_y = torch.tensor([lmap.get(vnames[l], -100) for l in vlabels], dtype=torch.int64)
            self.valid_tokens = sum(len(t) for t in vtexts)  # lstm_dataset_tokens: text bytes
            self.labels = names
        else:
            sents, tags, names = read_tag(a.train)
            vsents, vtags, vnames = read_tag(a.valid)
            feats = TAG_FEATURES if a.char_features else TAG_FEATURES[:1]
            self.dims = [d or a.embedding for _, _, _, d in feats]
            types = {}
            for s in sents:
                count(s, types)
            vocabs = []
            for fname, kind, k, _ in feats:
                counts = {}
                for w, c in types.items():
                    key = feature_key(kind, k, w)
                    counts[key] = counts.get(key, 0) + c
                if kind == "word":
                    vocabs.append(vocab_prune(counts, max(a.min_count, 1),
                                              a.vocab_size + 2 if a.vocab_size > 0 else 0))
                else:
                    vocabs.append(vocab_prune(counts, 1, 0))
            self.vocab_sizes = [len(v) for v in vocabs]
            cache = {}

            def word_ids(w):
                r = cache.get(w)
                if r is None:
                    r = [v.get(feature_key(kind, k, w), UNK_ID) for (_, kind, k, _), v in zip(feats, vocabs)]
                    # unseen: the lowercased word is not in the word vocabulary
                    r.append(int(feature_key("word", 0, w) not in vocabs[0]))
                    cache[w] = r
                return r

            lmap = {n: i for i, n in enumerate(names)}

            def enc(s, ts, unseen):
                """(len, nfeat + 1 [+ 1]): the feature ids, the target, [unseen], packed together."""
                rows = [word_ids(w) + [t] for w, t in zip(s, ts)]
                if unseen:
                    rows = [r[:-2] + r[-1:] + r[-2:-1] for r in rows]  # ids, target, unseen
                else:
                    rows = [r[:-2] + r[-1:] for r in rows]  # ids, target
                return torch.tensor(rows, dtype=torch.int64)

            self.train_x = [enc(s, t, False) for s, t in zip(sents, tags)]
            self.valid_x = [enc(s, [lmap.get(vnames[x], -100) for x in t], True) for s, t in zip(vsents, vtags)]
            self.train_y = self.valid_y = None
            self.valid_tokens = sum(len(s) for s in vsents)
            self.labels = names
        if len(self.labels) < 2:
            sys.exit(f"{a.train}: only one label: nothing to learn")
        self.nout = len(self.labels)
        self.nfeat = len(self.dims)
        # word dropout, as src/tasks/sequences.c: a training token of id i becomes <unk> with
        # probability 0.25 / (0.25 + count of i in the encoded training set)
        self.unk_p = []
        for fi in range(self.nfeat):
            counts = torch.bincount(torch.cat([x[:, fi] for x in self.train_x]),
                                    minlength=self.vocab_sizes[fi])
            self.unk_p.append(0.25 / (0.25 + counts.float()))
        self.train_len = [len(x) for x in self.train_x]
        n = len(self.train_x)
        self.steps_per_epoch = (n + a.batch - 1) // a.batch
        self.order = None
        self.order_epoch = -1

    def epoch_order(self, epoch):
        """src/tasks/sequences.c's seq_train_epoch: shuffle, sort by length within pools of 50
        batches, cut into batches, shuffle the batches (a short last batch stays
        last); batch k is then examples k*B .. k*B+B-1 of the order."""
        if self.order_epoch == epoch:
            return
        n, B, lens = len(self.train_x), self.a.batch, self.train_len
        r = Rng((self.a.seed * 0x9E3779B97F4A7C15 + epoch + 1) & M64)
        o = list(range(n))
        for i in range(n, 1, -1):
            j = r.below(i)
            o[i - 1], o[j] = o[j], o[i - 1]
        pool = 50 * B
        for at in range(0, n, pool):
            o[at:at + pool] = sorted(o[at:at + pool], key=lambda v: lens[v])  # stable
        nb = (n + B - 1) // B
        bo = list(range(nb))
        full = nb - 1 if n % B else nb  # a short last batch stays last
        for i in range(full, 1, -1):
            j = r.below(i)
            bo[i - 1], bo[j] = bo[j], bo[i - 1]
        self.order = [x for b in bo for x in o[b * B:b * B + B]]
        self.order_epoch = epoch

    # -- schedule and events ----------------------------------------------
    def elapsed(self):
        return time.perf_counter() - self.t0

    def progress(self):
        a = self.a
        p = self.step / (a.epochs * self.steps_per_epoch) if a.epochs > 0 else 0.0
        if a.time_limit > 0:  # whichever ends the run first, as lstm does
            p = max(p, self.elapsed() / a.time_limit)
        return min(p, 1.0)

    def current_lr(self):
        a = self.a
        p = self.progress()
        lr = a.lr
        if a.schedule == "cosine":
            lo = a.lr * a.lr_min
            lr = lo + (a.lr - lo) * (1 + math.cos(math.pi * p)) / 2
        elif a.schedule == "step":
            lr *= a.decay ** self.epoch
        elif a.schedule == "exponential":
            lr *= a.decay ** (p * (a.epochs if a.epochs > 0 else 1))
        if a.warmup > 0 and self.step < a.warmup:
            lr *= (self.step + 1) / a.warmup
        return lr

    def emit(self, kind, **fields):
        e = self.elapsed()
        if self.log:
            items = [("event", kind), ("epoch", self.epoch + 1), ("step", self.step), ("time", float(e))]
            items += list(fields.items())
            self.log.write("{" + ",".join(json.dumps(k) + ":" + jval(v) for k, v in items) + "}\n")
            self.log.flush()
        if self.a.quiet:
            return
        if kind == "start":
            print(fields["message"], file=sys.stderr)
        elif kind == "train":
            self.cur_loss, self.cur_tps = fields["loss"], fields["tokens_per_s"]
            if e - self.last_plain >= 10:
                self.show(e)
                self.last_plain = e
        elif kind == "valid":
            self.last_valid = fields["value"]
            print("epoch %d step %d: valid %s %.4f (loss %.4f)%s" % (
                self.epoch + 1, self.step, fields["metric"], fields["value"], fields["loss"],
                ", best so far" if fields["best"] else ""), file=sys.stderr)
            self.last_plain = e
        elif kind == "end":
            print("%s after %.0f s, %d steps: best valid %s %.4f" % (
                fields["message"], e, self.step, fields["best_metric"], fields["best_value"]),
                file=sys.stderr)
        sys.stderr.flush()

    def show(self, e):
        a = self.a
        p = self.progress()
        eta = e * (1 - p) / p if p > 0.001 else -1
        if a.time_limit > 0 and (a.epochs == 0 or a.time_limit - e < eta):
            eta = a.time_limit - e

        def fmt(s):
            return "--:--" if not (0 <= s <= 359999) else (
                "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%02d:%02d" % (s // 60, s % 60))

        ep = "epoch %d/%d" % (self.epoch + 1, a.epochs) if a.epochs > 0 else "epoch %d" % (self.epoch + 1)
        vb = " | valid %.4g %s" % (self.last_valid, self.metric) if self.last_valid is not None else ""
        print("%s step %d (%.0f%%) loss %.4f, %.0f tok/s, %s elapsed, %s left%s" % (
            ep, self.step, p * 100, self.cur_loss, self.cur_tps, fmt(int(e)), fmt(int(eta)), vb),
            file=sys.stderr)

    # -- steps ----------------------------------------------------------------
    def word_dropout(self, x):
        """x with each feature id above <unk> replaced by <unk> with its unk_p."""
        x = x.clone()
        for fi in range(self.nfeat):
            col = x[..., fi]
            drop = (col > UNK_ID) & (torch.rand(col.shape) < self.unk_p[fi][col])
            col[drop] = UNK_ID
        return x

    def run_batch(self, xs, idx, train=False):
        """The model on examples idx: the logits, the lengths, and for tag the per-token
        extra columns (target, [unseen]) in the logits' order; with train, word dropout."""
        seqs = [xs[i] for i in idx]
        if train:
            seqs = [self.word_dropout(x) for x in seqs]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        nf = self.nfeat
        if self.a.rnn == "packed":
            packed = pack_sequence(seqs, enforce_sorted=False)
            data = packed.data
            logits = self.model.forward_packed(packed._replace(data=data[:, :nf]), lengths)
            return logits, lengths, data[:, nf:]
        padded = pad_sequence(seqs)  # (T, B, columns), <pad> = 0
        mask = torch.arange(padded.shape[0]).unsqueeze(1) < lengths.unsqueeze(0)
        logits = self.model.forward_padded(padded[:, :, :nf], lengths, mask)
        return logits, lengths, (padded[mask][:, nf:] if self.task == "tag" else None)

    def train_step(self, k):
        a, m = self.a, self.model
        self.opt.zero_grad(set_to_none=True)
        if self.lm:
            T = a.seq_len
            x = self.stream[k * T:(k + 1) * T]
            y = self.stream[k * T + 1:(k + 1) * T + 1]
            logits, (h, c) = m.forward_lm(x, self.state)
            loss = F.cross_entropy(logits.view(-1, self.nout), y.reshape(-1))
            self.state = (h.detach(), c.detach())  # carry the state, not its gradient
            count, tokens = y.numel(), y.numel()
        else:
            idx = self.order[k * a.batch:(k + 1) * a.batch]
            logits, lengths, extra = self.run_batch(self.train_x, idx, train=True)
            if self.task == "tag":
                y = extra[:, 0]
            else:
                y = self.train_y[idx]
            loss = F.cross_entropy(logits, y, ignore_index=-100)
            count = int((y >= 0).sum())
            tokens = int(lengths.sum())
        loss.backward()
        if a.clip > 0:
            nn.utils.clip_grad_norm_(m.parameters(), a.clip)
        lr = self.current_lr()
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.step += 1
        return float(loss) * count, count, tokens

    # -- validation ---------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self):
        m = self.model
        m.eval()
        loss_sum, count, correct, unseen_n, unseen_ok = 0.0, 0, 0, 0, 0
        if self.lm:
            ids = self.valid_ids
            preds = len(ids) - 1
            if preds >= 1:
                S = max(1, min(VALID_STREAMS, preds))
                seg = preds // S
                X = ids[:S * seg].view(S, seg).t()
                Y = ids[1:S * seg + 1].view(S, seg).t()
                L, H = self.a.layers, self.a.hidden
                state = (torch.zeros(L, S, self.a.proj or H), torch.zeros(L, S, H))
                for at in range(0, seg, 256):
                    logits, state = m.forward_lm(X[at:at + 256], state)
                    loss_sum += float(F.cross_entropy(logits.view(-1, self.nout), Y[at:at + 256].reshape(-1),
                                                      reduction="sum"))
                count = S * seg
                rest_at = S * seg
                if preds > rest_at:  # the rest, on the last stream, from its state
                    st = (state[0][:, S - 1:S].contiguous(), state[1][:, S - 1:S].contiguous())
                    for at in range(rest_at, preds, 256):
                        e = min(at + 256, preds)
                        logits, st = m.forward_lm(ids[at:e].unsqueeze(1), st)
                        loss_sum += float(F.cross_entropy(logits.view(-1, self.nout), ids[at + 1:e + 1],
                                                          reduction="sum"))
                    count = preds
            m.train()
            loss = loss_sum / count if count else 0.0
            return loss, loss / math.log(2), None
        n = len(self.valid_x)
        order = sorted(range(n), key=lambda i: (len(self.valid_x[i]), i))
        tag = self.task == "tag"
        for at in range(0, n, VALID_BATCH):
            idx = order[at:at + VALID_BATCH]
            logits, lengths, extra = self.run_batch(self.valid_x, idx)
            if tag:
                y, un = extra[:, 0], extra[:, 1].bool()
            else:
                y = self.valid_y[idx]
            loss_sum += float(F.cross_entropy(logits, y, ignore_index=-100, reduction="sum"))
            count += int((y >= 0).sum())
            hit = logits.argmax(1) == y
            correct += int(hit.sum())
            if tag:
                unseen_n += int(un.sum())
                unseen_ok += int((hit & un).sum())
        m.train()
        total = sum(len(x) for x in self.valid_x) if tag else n  # unknown labels count as errors
        loss = loss_sum / count if count else 0.0
        return loss, correct / total if total else 0.0, (unseen_ok / unseen_n if unseen_n else 0.0) if tag else None

    def better(self, value, loss):
        if not self.have_best:
            return True
        if self.lm:
            return value < self.best_value
        return value > self.best_value or (value == self.best_value and loss < self.best_loss)

    def validate(self):
        t0 = time.perf_counter()
        loss, value, unseen = self.evaluate()
        stop = 0
        is_best = self.better(value, loss)
        if is_best:
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.have_best = True
            self.best_value, self.best_loss, self.best_unseen = value, loss, unseen
            self.bad_valids = 0
        else:
            self.bad_valids += 1
            if self.a.patience > 0 and self.bad_valids >= self.a.patience:
                stop = 1
        self.valid_secs = time.perf_counter() - t0
        self.valid_count += 1
        self.emit("valid", loss=loss, metric=self.metric, value=value, best=is_best)
        return stop

    # -- the loop (src/tasks/train.c's lstm_train) -------------------------------
    def run(self):
        a = self.a
        wall0 = time.perf_counter()
        torch.manual_seed(a.seed)
        self.setup()
        self.model = TaskModel(a.task, self.vocab_sizes, self.dims, a.hidden, a.layers, a.bidirectional,
                               a.dropout, self.nout, a.rnn, a.proj)
        params = list(self.model.parameters())
        if a.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, a.beta2), weight_decay=a.weight_decay)
        elif a.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, a.beta2), weight_decay=a.weight_decay)
        elif a.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
        elif a.optimizer == "rmsprop":
            self.opt = torch.optim.RMSprop(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
        else:
            self.opt = torch.optim.Adadelta(params, lr=a.lr, weight_decay=a.weight_decay)
        nparams = sum(p.numel() for p in params)
        self.prep_secs = time.perf_counter() - wall0
        if not a.quiet:
            print("training %s on %s (%d examples), validating on %s, %d thread(s), torch %s "
                  "(data and model ready in %.1f s)" % (
                      a.task, a.train, len(self.train_x) if not self.lm else self.train_bytes,
                      a.valid, torch.get_num_threads(), torch.__version__, self.prep_secs), file=sys.stderr)

        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.have_best, self.best_value, self.best_loss, self.best_unseen = False, 0.0, 0.0, None
        self.best_state = None
        self.bad_valids, self.valid_secs, self.valid_count = 0, 0.0, 0
        self.train_secs, self.train_tokens = 0.0, 0
        ev_loss, ev_count, ev_tokens = 0.0, 0, 0
        self.t0 = time.perf_counter()
        ev_time = 0.0
        self.emit("start", task=a.task, message="%s model, %d parameters, %d steps per epoch" % (
            a.task, nparams, self.steps_per_epoch))

        self.model.train()
        stop, since_valid, step_secs = 0, 0, 0.0
        while not stop and (a.epochs == 0 or self.epoch < a.epochs):
            if not self.lm:
                self.epoch_order(self.epoch)
            if self.lm and self.batch_in_epoch == 0:  # each epoch starts from a zero state
                self.state = (torch.zeros(a.layers, a.batch, a.proj or a.hidden),
                              torch.zeros(a.layers, a.batch, a.hidden))
            while not stop and self.batch_in_epoch < self.steps_per_epoch:
                if a.time_limit > 0:  # stop in time for a last validation
                    vsecs = self.valid_secs
                    if vsecs == 0 and self.train_tokens > 0:
                        vsecs = 0.6 * self.valid_tokens * self.train_secs / self.train_tokens
                    reserve = vsecs * 1.2 + 1 + step_secs * 1.5
                    if self.elapsed() + reserve >= a.time_limit:
                        stop = 2
                        break
                b0 = time.perf_counter()
                ls, cnt, tokens = self.train_step(self.batch_in_epoch)
                dt = time.perf_counter() - b0
                step_secs = 0.9 * step_secs + 0.1 * dt if step_secs else dt
                self.train_secs += dt
                self.train_tokens += tokens
                self.batch_in_epoch += 1
                since_valid += 1
                ev_loss += ls
                ev_count += cnt
                ev_tokens += tokens
                if a.log_every > 0 and self.step % a.log_every == 0:
                    e = self.elapsed()
                    self.emit("train", loss=ev_loss / ev_count if ev_count else 0.0, lr=self.current_lr(),
                              tokens_per_s=ev_tokens / (e - ev_time) if e > ev_time else 0.0)
                    ev_loss, ev_count, ev_tokens, ev_time = 0.0, 0, 0, e
                if (self.lm and a.valid_every > 0 and since_valid >= a.valid_every
                        and self.batch_in_epoch < self.steps_per_epoch):
                    since_valid = 0
                    stop = self.validate()
            if stop == 2:
                break
            self.epoch += 1
            self.batch_in_epoch = 0
            if since_valid > 0:  # the end of each epoch
                since_valid = 0
                stop = self.validate() or stop
        if since_valid > 0:
            self.validate()
        if self.have_best:  # the model that did best on valid
            self.model.load_state_dict(self.best_state)
        message = "time limit reached" if stop == 2 else "early stop" if stop else "done"
        self.emit("end", best_metric=self.metric, best_value=float(self.best_value), message=message)
        elapsed = self.elapsed()
        if self.log:
            self.log.close()
        res = {"impl": "torch", "task": a.task, "best_metric": self.metric, "best_value": self.best_value}
        if self.task == "tag":
            res["unseen_accuracy"] = self.best_unseen
        res.update({
            "steps": self.step,
            "epochs_done": round(self.step / self.steps_per_epoch, 4),
            "tokens_per_s": round(self.train_tokens / self.train_secs, 1) if self.train_secs else 0.0,
            "train_tokens": self.train_tokens,
            "train_secs": round(self.train_secs, 3),
            "elapsed": round(elapsed, 3),
            "parameters": nparams,
            "validations": self.valid_count,
            "stop": message,
            "prep_secs": round(self.prep_secs, 3),
            "threads": torch.get_num_threads(),
            "rnn": a.rnn if not self.lm else "plain",
            "torch": torch.__version__,
        })
        print(json.dumps(res, separators=(",", ":")))
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(
        allow_abbrev=False, description="Trains lstm's task models in PyTorch, with lstm train's options and defaults.")
    ap.add_argument("task", choices=["lm", "classify", "tag"])
    ap.add_argument("--train", required=True, metavar="FILE")
    ap.add_argument("--valid", required=True, metavar="FILE")
    ap.add_argument("--out", metavar="MODEL", help="accepted for lstm's command line; nothing is saved")
    ap.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS")
    ap.add_argument("--epochs", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--quiet", action="store_true")
    for name, typ in [("layers", int), ("hidden", int), ("embedding", int), ("bidirectional", int),
                      ("dropout", float), ("vocab-size", int), ("min-count", int), ("max-length", int),
                      ("batch", int), ("seq-len", int), ("lr", float), ("lr-min", float), ("decay", float),
                      ("warmup", int), ("clip", float), ("patience", int), ("valid-every", int),
                      ("momentum", float), ("weight-decay", float), ("beta2", float), ("proj", int)]:
        ap.add_argument("--" + name, type=typ, default=None)
    ap.add_argument("--tokens", choices=["word", "byte"], default="word")
    ap.add_argument("--no-char-features", action="store_true")
    ap.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adadelta"], default=None)
    ap.add_argument("--rnn", choices=["padded", "packed"], default="padded",
                    help="torch only: how classify/tag run the LSTM over sequences of different "
                         "lengths (both exact; packed is slow in PyTorch 1.13's CPU backward)")
    ap.add_argument("--schedule", choices=["constant", "cosine", "step", "exponential"], default="cosine")
    a = ap.parse_args()

    md, td = MODEL_DEFAULTS[a.task], TRAIN_DEFAULTS[a.task]
    for k, v in list(md.items()) + list(td.items()):
        if k != "epochs" and getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.optimizer is None:
        a.optimizer = "adam"
    else:  # --optimizer resets the rate and beta2 to their defaults unless they are given
        if not any(x == "--lr" or x.startswith("--lr=") for x in sys.argv[1:]):
            a.lr = OPTIM_LR[a.optimizer]
        if not any(x == "--beta2" or x.startswith("--beta2=") for x in sys.argv[1:]):
            a.beta2 = 0.999
    if a.momentum is None:
        a.momentum = 0.0
    if a.beta2 is None:
        a.beta2 = 0.999
    if a.proj is None:
        a.proj = 0
    if a.weight_decay is None:
        a.weight_decay = 1e-2 if a.optimizer == "adamw" else 0.0
    if a.epochs < 0:
        a.epochs = 0 if a.time_limit > 0 else td["epochs"]
    a.char_features = not a.no_char_features
    a.valid_streams = VALID_STREAMS
    if a.epochs == 0 and a.time_limit <= 0:
        ap.error("give a number of epochs, a time limit, or both")
    if a.task == "lm" and a.bidirectional:
        ap.error("a language model cannot be bidirectional: it would see the future")
    if min(a.embedding, a.hidden, a.layers, a.batch, a.seq_len, a.threads) < 1 or not 0 <= a.dropout < 1:
        ap.error("sizes, --batch, --seq-len and --threads must be >= 1 and --dropout in [0, 1)")
    if a.vocab_size < 0 or a.min_count < 0 or a.max_length < 0 or a.lr <= 0 or a.clip < 0 \
            or not 0 <= a.lr_min <= 1 or a.warmup < 0 or a.patience < 0 or a.valid_every < 0:
        ap.error("option out of range")
    torch.set_num_threads(a.threads)
    Trainer(a).run()


if __name__ == "__main__":
    main()
