"""Where LocalSLM's decoding time goes: ``generate()`` against a bare greedy loop, and a profile of one step.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/profile_slm_decode.py

Answers four short questions with ``LocalSLM.generate`` (transformers' ``generate()`` with its logits processors)
and with a bare loop of model forwards on the KV cache (no ``generate()``), prints both tokens/s, then the torch
profiler's top operators over five decode steps. docs/speed.md reports the run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import time, torch
torch.set_num_threads(1)
from langchain_slm_router.slm import LocalSLM
slm = LocalSLM(max_new_tokens=32)
slm.load()
convs = [[{"role": "user", "content": q}] for q in ["Who wrote Hamlet?", "What is the capital of Peru?", "When did World War II end?", "Who painted the Mona Lisa?"]]
slm.generate(convs[0])
# 1) LocalSLM.generate
t = time.perf_counter(); n = 0
for c in convs:
    n += slm.generate(c).output_tokens
gen_s = time.perf_counter() - t
# 2) bare greedy loop: model forward with DynamicCache, no generate()
lm = slm.loaded
model, tok = lm.model, lm.tokenizer
t = time.perf_counter(); m = 0
with torch.inference_mode():
    for c in convs:
        ids = tok.apply_chat_template(slm.with_system(c), add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor): ids = ids["input_ids"]
        out = model(input_ids=ids, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(31):
            if nxt.item() == tok.eos_token_id: break
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values; m += 1
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
bare_s = time.perf_counter() - t
# 3) one decode step profile
from torch.profiler import profile, ProfilerActivity
with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(5):
        out = model(input_ids=nxt, past_key_values=past, use_cache=True)
print(f"generate(): {n} tokens {gen_s:.2f}s = {n/gen_s:.1f} tok/s; bare loop: {m} tokens {bare_s:.2f}s = {m/bare_s:.1f} tok/s")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
