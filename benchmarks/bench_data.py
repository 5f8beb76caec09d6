"""Rendering the source task: `tlutils.render_glyphs` against a per-image pipeline, side by side.

The foundation issue's target: at least 20,000 printed-glyph images in under 30 s on 2 CPU cores,
cold (the font templates drawn too). `render_glyphs` draws each (font, character, stroke) template
once and then warps, shrinks, blurs and adds noise to whole batches of tensors. The per-image
pipeline is the straightforward way to write it: draw every image's glyph with PIL, then apply
torchvision's RandomAffine, Resize and GaussianBlur to that one image, as a Dataset's transform
would. Both run in this process on the same number of images.

    python benchmarks/bench_data.py              # 20,000 images each
    python benchmarks/bench_data.py --n 50000
"""
from __future__ import annotations

import argparse
import random
import time

import torch
from PIL import ImageFont
from torchvision import transforms

import tlutils
from tlutils.data import IMAGE_SIZE, STROKES, draw_glyph, font_dir, glyph_templates

BUDGET_N, BUDGET_S = 20_000, 30.0


def per_image_glyphs(n: int, size: int, seed: int) -> torch.Tensor:
    """n images drawn and augmented one at a time (PIL, then torchvision transforms)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    fonts = [ImageFont.truetype(str(font_dir() / name), 64) for name in tlutils.FONTS]
    augment = transforms.Compose([
        transforms.RandomAffine(12, translate=(0.12, 0.12), scale=(0.8, 1.05), shear=10),
        transforms.Resize(size, antialias=True),
        transforms.GaussianBlur(5, sigma=(0.3, 1.0)),
    ])
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        glyph = draw_glyph(rng.choice(fonts), rng.choice(tlutils.DIGITS), rng.choice(STROKES))
        image = augment(torch.from_numpy(glyph)[None])
        out[i] = (image + 0.05 * rng.random() * torch.randn_like(image)).clamp(0, 1)
    return out


def timed(render) -> float:
    start = time.perf_counter()
    render()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=BUDGET_N, help="images per pipeline")
    parser.add_argument("--size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} images "
          f"{args.size}x{args.size}, cold (font templates included)")
    glyph_templates.cache_clear()
    batched = timed(lambda: tlutils.render_glyphs(args.n, size=args.size, seed=args.seed))
    per_image = timed(lambda: per_image_glyphs(args.n, args.size, args.seed))
    for label, seconds in (("per-image PIL + torchvision", per_image), ("tlutils.render_glyphs", batched)):
        print(f"  {label:<28} {seconds:7.2f} s   {args.n / seconds:9.0f} images/s")
    print(f"  speed-up {per_image / batched:.1f}x")
    budget = BUDGET_S * args.n / BUDGET_N
    verdict = "within" if batched <= budget else "OVER"
    print(f"  budget: {BUDGET_N} images in {BUDGET_S:.0f} s, i.e. {budget:.1f} s for {args.n}: {verdict}")


if __name__ == "__main__":
    main()
