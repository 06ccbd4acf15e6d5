#!/usr/bin/env bash
# The README example images of `srcli sample-diverse`, `srcli interpolate` and `srcli fuse`, made
# with the shipped weights from photos of the validation split (never seen in training).
#
#   scripts/make_examples.sh [VAL_DIR]        # default data/val, as built by `srcli prepare-data data/`
#
# The commands run into a scratch folder; the pictures the README shows are copied to docs/examples/
# as JPEG (quality 85) to keep the repository small.  Deterministic: fixed seeds, CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

VAL=${1:-data/val}
OUT=${EXAMPLES_OUT:-docs/examples}   # override to try the script elsewhere
SRCLI=(python3 -m srcli)
RUN=(--device cpu --weights srcli-x2-4-c32)
DIVERSE=YellowFlower_0.png          # sample-diverse and interpolate: LR = this crop downscaled 4x
EYES=YellowFlower_1.png FACE=YellowFlower_0.png   # fuse: two HR crops of one size (no faces in our data)

for f in "$DIVERSE" "$EYES" "$FACE"; do
    [[ -f "$VAL/$f" ]] || { echo "error: $VAL/$f missing (build the split with: srcli prepare-data data/)" >&2; exit 2; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# The LR input: the HR crop downscaled 4x by the protocol's degradation (Pillow bicubic).
python3 - "$VAL/$DIVERSE" "$OUT/lr_input.png" <<'PY'
import sys
from PIL import Image
from srcli.imageio import load_rgb8
from srcli.metrics import degrade
hr = load_rgb8(sys.argv[1])
Image.fromarray(degrade(hr, (hr.shape[1] // 4, hr.shape[0] // 4))).save(sys.argv[2])
PY

set -x
"${SRCLI[@]}" sample-diverse "$OUT/lr_input.png" --n 8 --scale 4 --seed 0 -o "$WORK/samples" "${RUN[@]}" --json \
    > "$WORK/samples.json"
"${SRCLI[@]}" interpolate "$OUT/lr_input.png" --t 50 --lambdas 0,0.4,0.8,1.0 --seeds 1,2 --scale 4 \
    -o "$WORK/interp" "${RUN[@]}"
"${SRCLI[@]}" fuse "$VAL/$EYES" "$VAL/$FACE" --t 30 --t 50 --t 70 --scale 4 -o "$WORK/fuse_strip.png" "${RUN[@]}"
set +x

python3 - "$WORK" "$OUT" <<'PY'
import json
import sys
from pathlib import Path
from PIL import Image

work, out = Path(sys.argv[1]), Path(sys.argv[2])
pictures = {
    "sample_sheet.jpg": work / "samples" / "lr_input_sheet.png",
    "sample_sigma.jpg": work / "samples" / "lr_input_sigma.png",
    "interpolate_strip.jpg": work / "interp" / "lr_input_strip.png",
    "fuse_strip.jpg": work / "fuse_strip.png",
}
for name, src in pictures.items():
    Image.open(src).convert("RGB").save(out / name, quality=85)
records = [json.loads(line) for line in (work / "samples.json").read_text().splitlines() if line.strip()]
mean_sigma = records[0]["mean_sigma"]  # one record per sample (docs/json.md), each with the whole set's sigma
total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
print(f"mean sigma {mean_sigma:.2f}; {out}/ holds {total / 1e6:.2f} MB")
PY
