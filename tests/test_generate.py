import dataclasses

import numpy as np
import pytest
import torch

from gpt.generate import greedy_batch, greedy_complete, greedy_writes_all, sample_stream
from gpt.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=7, block_size=24, n_layer=2, n_head=2, n_embd=16)


def model():
    torch.manual_seed(1)
    return GPT(CFG).eval()


def test_kv_cache_decode_equals_no_cache_decode():
    m = model()
    prompts = torch.randint(0, 7, (9, 5))
    a = greedy_batch(m, prompts, end_id=6, max_new_tokens=12, use_cache=True)
    b = greedy_batch(m, prompts, end_id=6, max_new_tokens=12, use_cache=False)
    assert torch.equal(a, b)


def test_complete_handles_mixed_lengths_and_order():
    m = model()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 6, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (20,), generator=g)]
    together = greedy_complete(m, prompts, end_id=6, max_new_tokens=8, batch_size=3)
    alone = [greedy_complete(m, [p], end_id=6, max_new_tokens=8)[0] for p in prompts]
    assert together == alone
    for p, out in zip(prompts, together):  # equal to a plain argmax loop, row by row
        seq = list(p)
        ref = []
        for _ in range(8):
            logits, _ = m(torch.tensor([seq]))
            t = int(logits[0, -1].argmax())
            if t == 6:
                break
            ref.append(t)
            seq.append(t)
        assert out == ref


def test_finished_rows_stop_and_are_padded_with_end():
    m = model()
    prompts = torch.randint(0, 7, (16, 3))
    out = greedy_batch(m, prompts, end_id=6, max_new_tokens=10)
    for row in out.tolist():
        if 6 in row:
            assert all(t == 6 for t in row[row.index(6):])


def test_sample_stream_is_seeded_and_runs_past_block_size():
    m = model()
    a = list(sample_stream(m, [1, 2], 40, 1.0, 3, torch.Generator().manual_seed(5)))
    b = list(sample_stream(m, [1, 2], 40, 1.0, 3, torch.Generator().manual_seed(5)))
    assert a == b and len(a) == 40 and all(0 <= t < 7 for t in a)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_greedy_writes_is_true_exactly_for_what_greedy_decoding_writes(pos):
    """Rows made of a prompt and its own greedy completion are written; the same rows with one
    target token changed, or ending later or sooner, are not; a row past the block is not scored."""
    torch.manual_seed(3)
    m = GPT(dataclasses.replace(CFG, pos=pos)).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 6, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (30,), generator=g)]
    new = greedy_complete(m, prompts, end_id=6, max_new_tokens=14)
    rows, want = [], []
    for p, out in zip(prompts, new):
        ended = len(out) < min(14, CFG.block_size - len(p))  # else it stopped at the limit, END unwritten
        rows.append((p, out + [6] if ended else out)); want.append(True)
        if out:
            k = len(out) // 2
            rows.append((p, out[:k] + [(out[k] + 1) % 6] + out[k + 1:] + [6])); want.append(False)
            rows.append((p, out[:-1] + [6])); want.append(False)  # ends a token early
        rows.append((p, out + [(out[-1] + 1) % 6 if out else 0, 6])); want.append(False)  # ends a token late
    rows.append(([1] * 20, [2] * 10 + [6])); want.append(False)  # 30 tokens: past the block of 24
    assert 10 < sum(want) < len(want)
    width = max(len(p) + len(t) for p, t in rows)
    ids = np.full((len(rows), width), 6, dtype=np.int64)
    for i, (p, t) in enumerate(rows):
        ids[i, : len(p) + len(t)] = p + t
    plen = np.array([len(p) for p, _ in rows])
    length = np.array([len(p) + len(t) for p, t in rows])
    for tokens in (60, 100_000):  # many small chunks, one big one
        assert greedy_writes_all(m, ids, plen, length, tokens=tokens).tolist() == want
