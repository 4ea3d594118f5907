"""`latentdiff evaluate` with diffusers' `guidance_rescale` (Lin et al. 2024, "Common Diffusion Noise Schedules and
Sample Steps are Flawed", section 3.4) set on every text-to-image call, to measure whether rescaling the guided
prediction lets a zero-terminal-SNR model draw well at high guidance. latentdiff has no such option (diffusers'
img2img pipeline has none either); this asks the question before adding one.

    python benchmarks/eval_guidance_rescale.py PHI [latentdiff evaluate arguments]
    python benchmarks/eval_guidance_rescale.py 0.7 --model shapes --data DATA --split test --num-samples 100 \\
        --guidance 4 --guidance-sweep 2,4,7.5 --out eval-rescale

Measured 2026-12-01 (docs/speedrun/shapes.md, "Guidance"): no gain on either bundled model. `benchmarks/speedrun.py
--measure M --guidance-rescale PHI` asks the same of the training emoji (2026-12-04: no gain there either).
"""

from __future__ import annotations

import functools
import sys


def rescale_every_call(phi: float) -> None:
    """Make every text-to-image call of this process pass diffusers' `guidance_rescale=phi` (0: off)."""
    from diffusers import StableDiffusionPipeline

    original = StableDiffusionPipeline.__call__

    @functools.wraps(original)
    def rescaled(self, *args, **kwargs):
        kwargs["guidance_rescale"] = phi
        return original(self, *args, **kwargs)

    StableDiffusionPipeline.__call__ = rescaled  # every backend runs diffusers' own loop (pipeline.py)


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    rescale_every_call(float(argv[0]))
    from latentdiff.stages.evaluate import main as evaluate

    return evaluate(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
