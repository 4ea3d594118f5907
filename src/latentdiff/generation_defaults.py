"""Generation defaults: one place for the numbers and names that `generate`, `evaluate`, `export` and `serve` share
(their flags are declared in config.py). No imports: the CLI's help must not wait for torch or diffusers."""

# Where generation runs (latentdiff.backends runs each). Unset, it is onnx on the CPU: 2.61x diffusers' images/s
# at batch 1 with pixels within 1/255 of torch's (README "Export and backends", benchmarks/bench_generate.py);
# torch on GPUs and wherever ONNX Runtime is missing. $LATENTDIFF_BACKEND sets it for every command.
BACKENDS = ("torch", "onnx", "openvino")
BACKEND_ENV = "LATENTDIFF_BACKEND"
BACKEND_HELP = ("what runs the networks: torch (diffusers' modules, the same pixels as StableDiffusionPipeline), "
                "onnx (ONNX Runtime) or openvino; a pipeline folder is exported once and reused (default: an "
                f"export's own format, else ${BACKEND_ENV}, else onnx on the CPU (about 2x faster, pixels within "
                "1/255 of torch's) and torch on a GPU)")
MODEL_HELP = ("a pipeline folder, a bundled model (emoji, shapes) or a Hugging Face Hub id (default: the bundled "
              "emoji model)")
THREADS_HELP = ("CPU threads for the networks (default: $OMP_NUM_THREADS, else the cores other processes leave "
                "free now: the core count minus the 1-minute load average, at least 1)")
# The samplers' names, in the order help and the page list them; diffusion/schedulers.py maps each to a
# diffusers scheduler (it imports diffusers, which the CLI's help must not wait for) and checks the two agree.
SCHEDULER_NAMES = ("ddpm", "ddim", "euler", "euler-a", "heun", "dpmpp-2m", "dpmpp-2m-karras", "unipc", "lms")
DEFAULT_SCHEDULER = "dpmpp-2m"
DEFAULT_GENERATION_STEPS = 25
DEFAULT_GUIDANCE = 7.5  # classifier-free guidance scale (Ho & Salimans 2022); <= 1 turns guidance off
GUIDANCE_HELP = (f"classifier-free guidance scale (<= 1: off; default: the model's own, from its latentdiff_model.json, "
                 f"else {DEFAULT_GUIDANCE})")


# Stored weight precision. fp16: half the files, about the same speed on ONNX Runtime's CPU provider, pixels
# within 3/255 of fp32 on the bundled model (README "Export and backends"). int8 (ONNX Runtime's dynamic
# quantisation) was measured and left out: a quarter of the size but slower (1.15 vs 2.45 images/s) and up to
# 187/255 away (mean 6.4/255).
EXPORT_WEIGHTS = ("fp32", "fp16")
