"""What does recording the residual stream cost? (issue 4's performance budget)

Times, in ONE run with the repetitions interleaved (so that a busy machine slows every variant
alike), on the default model and a batch of 8 prompts of exactly 100 tokens:

* ``forward``      the plain forward pass ``model(input_ids, attention_mask, use_cache=False)``;
* ``trace_all``    :func:`helpers.trace` recording all five sites of every layer at every position;
* ``trace_resid``  the same, only the three residual sites (resid_pre, resid_mid, resid_post);
* ``lens_last``    :func:`helpers.trace` at the last position (all sites), plus the logit lens
  ``z`` of ``resid_post`` at every layer (``Trace.z_stack``: one unembedding per layer, batched).

Each under ``torch.inference_mode()``; the median of ``--reps`` repetitions (default 10), after
two warm-up rounds, of the wall time and of the CPU time of this process (``time.process_time``:
on a machine shared with other work the wall time mostly measures the neighbours; the CPU time,
best with ``--threads 1`` where no thread spins waiting for a descheduled partner, measures the
work). Budgets: trace_all <= 1.15x forward; lens_last <= 1.5x forward.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_trace.py [--reps 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

# Eight prompts written for this benchmark, each longer than 100 tokens (truncated to 100).
PROMPTS = [
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a tin of oil "
    "and a cloth for the great lens. For thirty years he had watched the ships pass the rocks "
    "below, and he knew each of them by the shape of its lights. On stormy nights he stayed awake "
    "until dawn, listening to the wind and counting the seconds between the flashes of the beam, "
    "and in the morning he wrote everything down in a thick book with a green cover. Nobody ever read it, but he kept writing, because the sea deserved a witness.",
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light into "
    "chemical energy. Inside the chloroplasts, chlorophyll absorbs mostly red and blue light and "
    "uses that energy to split water molecules, releasing oxygen as a by-product. The energy is "
    "stored in carrier molecules that then drive the Calvin cycle, where carbon dioxide from the "
    "air is fixed into sugars that the plant uses to grow, to store energy and to build its walls. Nearly all the food on Earth depends on it, directly or not.",
    "To bake a simple loaf of bread, mix five hundred grams of flour with a teaspoon of salt and "
    "a small packet of dried yeast. Add about three hundred millilitres of warm water and stir "
    "until a rough dough forms. Knead it on a floured table for ten minutes, until it is smooth "
    "and springs back when pressed. Leave it covered in a warm place for an hour, shape it, let it "
    "rise again, and bake it in a hot oven for about thirty-five minutes until it sounds hollow. Let it cool before cutting.",
    "\"Are you sure this is the right road?\" asked Maria, looking at the map upside down. "
    "\"Absolutely,\" said her brother, although he had not seen a sign for twenty minutes. The "
    "fields on both sides were the same pale yellow, and the only landmark was a broken windmill "
    "that they had, Maria was quite certain, already passed twice. \"Then why is the sun on the "
    "wrong side of the car?\" she asked. He did not answer, but he slowed down at the next turn. Somewhere behind them a dog barked.",
    "The Roman Empire built more than four hundred thousand kilometres of roads, of which about "
    "eighty thousand were paved with stone. The roads were laid in layers: a foundation of large "
    "stones, a bed of gravel and lime, and a surface of tightly fitted slabs with a curved profile "
    "so that rain ran off to the ditches on either side. Milestones marked the distance to Rome, "
    "and many of the routes are still followed by modern motorways across Europe and beyond. Some bridges they built still carry traffic today.",
    "A neural network learns by adjusting its weights to reduce a loss that measures how wrong its "
    "predictions are. For each batch of examples, the gradient of the loss with respect to every "
    "weight is computed by backpropagation, and each weight is moved a small step against its "
    "gradient. Over many steps the network finds weights that work well on the training data; "
    "whether they also work on new data depends on the amount of data, the model and the noise. This is why we test on held-out data.",
    "The old market opened before sunrise. Fishermen unloaded crates of silver sardines, farmers "
    "stacked tomatoes and peppers into bright pyramids, and a baker sold warm rolls from a cart "
    "with a squeaking wheel. By eight o'clock the narrow streets were full of voices bargaining "
    "over prices, children running between the stalls, and the smell of coffee from the small "
    "cafe on the corner, where the same three old men had played cards every morning for years. Nobody remembered who had won the first game.",
    "Volcanoes form where molten rock from deep inside the Earth reaches the surface. Most of them "
    "lie along the edges of tectonic plates, where one plate sinks beneath another or where two "
    "plates move apart, but some, like those of Hawaii, sit above hot spots in the middle of a "
    "plate. An eruption can be gentle, with rivers of lava flowing slowly downhill, or explosive, "
    "throwing ash high into the atmosphere, where it can drift around the world for months. Scientists watch them with seismometers.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = helpers.load_model()
    batch = tok(PROMPTS, return_tensors="pt", truncation=True, max_length=args.tokens)
    assert batch["input_ids"].shape == (8, args.tokens), batch["input_ids"].shape
    L = helpers.arch(model).n_layers

    def forward():
        with torch.inference_mode():
            model(**batch, use_cache=False)

    def trace_all():
        helpers.trace(model, tok, batch)

    def trace_resid():
        helpers.trace(model, tok, batch, sites=["resid_pre", "resid_mid", "resid_post"])

    def lens_last():
        tr = helpers.trace(model, tok, batch, positions=-1)
        tr.z_stack("resid_post")             # z of resid_post at every layer: [30, 8, 1, V]

    variants = {"forward": forward, "trace_all": trace_all, "trace_resid": trace_resid,
                "lens_last": lens_last}
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(2):                       # warm-up
        for fn in variants.values():
            fn()
    for _ in range(args.reps):               # interleaved repetitions
        for k, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)

    mw = {k: statistics.median(v) for k, v in wall.items()}
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    budget = {"forward": None, "trace_all": 1.15, "trace_resid": 1.15, "lens_last": 1.5}
    print(f"\nbatch 8 x {args.tokens} tokens, {L} layers, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.reps} interleaved repetitions\n")
    mn = {k: min(v) for k, v in wall.items()}
    print("| variant | wall median (ms) | ratio | wall min (ms) | ratio | CPU median (ms) | ratio | budget |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in variants:
        b = f"<= {budget[k]:.2f}x" if budget[k] else ""
        print(f"| {k} | {1000 * mw[k]:.0f} | {mw[k] / mw['forward']:.3f}x | {1000 * mn[k]:.0f} | "
              f"{mn[k] / mn['forward']:.3f}x | {1000 * mc[k]:.0f} | {mc[k] / mc['forward']:.3f}x | {b} |")
    print("\n(min: the least disturbed repetition; on a shared machine it is the closest to the cost "
          "on an idle one)")
    for name, m in (("median wall", mw), ("min wall", mn), ("median CPU", mc)):
        ok = all(m[k] / m["forward"] <= b for k, b in budget.items() if b)
        print(f"within budget by {name} time: {ok}")


if __name__ == "__main__":
    main()
