"""Evaluation metrics: hand-computed ROUGE-L / Min-K% / AUC / PrivLeak, MC accuracy with known
preferences, KnowMem / VerbMem on stub generators, batched generation and scoring on a tiny Llama."""

from types import SimpleNamespace

import pytest
import torch

from unlearning import eval as ev
from unlearning.eval import muse
from unlearning.eval.common import greedy_generate, truncate_left

torch.set_num_threads(1)

SENTS = ["The following are multiple choice questions (with answers) about biology.",
         "Question: What is the capital of France?\nAnswer: Paris",
         "Answer: A", "Answer: B", "Answer: C", "Answer: D",
         "the cat sat on the mat and the dog lay on the rug"] * 5


def make_tok(vocab_size=400, bos=True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(SENTS, trainer)
    if bos:
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tk.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                   bos_token="<s>" if bos else None)


def tiny_llama(tok, max_pos=64, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_pos,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tok():
    return make_tok()


class Favour(torch.nn.Module):
    """Stub causal LM: the same logits at every position, ``bonus`` on ``favoured`` tokens."""

    def __init__(self, vocab, favoured, bonus=5.0, max_pos=512):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.favoured, self.bonus = vocab, list(favoured), bonus
        self.config = SimpleNamespace(max_position_embeddings=max_pos)
        self.calls = 0

    @property
    def device(self):
        return self.dummy.device

    def forward(self, input_ids, attention_mask=None, **_):
        self.calls += 1
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favoured] = self.bonus
        return SimpleNamespace(logits=logits)


# ----------------------------------------------------------------------------- pure functions
def test_rouge_l_hand_computed():
    # LCS "the cat on the mat" = 5 of 6 tokens each side: P = R = F = 5/6
    assert muse.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx((5 / 6, 5 / 6))
    # reference 4 tokens, prediction 2 in order: P 1, R 0.5, F 2/3
    f1, recall = muse.rouge_l("alpha beta gamma delta", "alpha gamma")
    assert (f1, recall) == pytest.approx((2 / 3, 0.5))
    assert muse.rouge_l("Paris", "") == (0.0, 0.0)
    assert muse.rouge_l("Running dogs", "running dog")[0] == pytest.approx(0.5)  # no stemming


def test_mink_from_logprobs():
    lp = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert ev.mink_from_logprobs(lp, 0.4) == pytest.approx(4.5)   # lowest 2: -5, -4
    assert ev.mink_from_logprobs(lp, 0.1) == pytest.approx(5.0)   # int(0.5) = 0 -> at least 1
    assert ev.mink_from_logprobs(lp, 1.0) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        ev.mink_from_logprobs([], 0.4)


def test_auc_convention_and_privleak():
    # forget scores above holdout (forget looks *less* likely: over-unlearned) -> 1
    assert ev.auc([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == 1.0
    # memorised forget set (low Min-K% scores) -> 0, as MUSE's target model
    assert ev.auc([0.0, 1.0], [2.0, 3.0, 4.0]) == 0.0
    assert ev.auc([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert ev.auc([1.0, 3.0], [2.0]) == 0.5
    assert ev.privleak(0.25, 0.5) == pytest.approx(-50.0)
    assert ev.privleak(0.4772, 0.4772) == 0.0
    assert ev.privleak(0.0, 0.4772) == pytest.approx(-100.0)
    with pytest.raises(ValueError):
        ev.privleak(0.5, 0.0)


def test_cut_at_stop_strings():
    assert ev.cut_at_stop(" Paris\n\nQuestion: What?") == "Paris"
    assert ev.cut_at_stop("Paris\nQuestion: x") == "Paris"
    assert ev.cut_at_stop("Paris Question: x") == "Paris"
    assert ev.cut_at_stop("1889, in May\nmore") == "1889, in May\nmore"
    assert ev.knowmem_prompt("Q2?", [{"question": "Q1?", "answer": "A1"}]) == \
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: "


def test_knowmem_on_stub_generator(monkeypatch, tok):
    seen = {}

    def fake_generate(model, tok_, prompts, max_new_tokens, **kw):
        seen["prompts"], seen["n"] = list(prompts), max_new_tokens
        return [" Paris\n\nQuestion: next?", "the blue whale Question: x", "nothing"]

    monkeypatch.setattr(muse, "greedy_generate", fake_generate)
    qa = [{"question": "Capital of France?", "answer": "Paris"},
          {"question": "Largest animal?", "answer": "blue whale"},
          {"question": "Tallest?", "answer": "Everest"}]
    icl = [{"question": "2+2?", "answer": "4"}]
    items = ev.knowmem_details(None, tok, qa, icl)
    assert [it["output"] for it in items] == ["Paris", "the blue whale", "nothing"]
    assert seen["n"] == 32
    assert seen["prompts"][0] == "Question: 2+2?\nAnswer: 4\n\nQuestion: Capital of France?\nAnswer: "
    # F1: 1, 2*(2/3*1)/(2/3+1) = 0.8, 0; recall 1, 1, 0
    assert [it["rougeL"] for it in items] == pytest.approx([1.0, 0.8, 0.0])
    assert [it["rougeL_recall"] for it in items] == pytest.approx([1.0, 1.0, 0.0])
    assert ev.knowmem_scores(None, tok, qa, icl) == pytest.approx([100.0, 80.0, 0.0])
    assert ev.knowmem(None, tok, qa, icl) == pytest.approx(100 * 1.8 / 3)


def test_verbmem_truncates_ground_truth_to_token_budget(monkeypatch, tok):
    gt = "the cat sat on the mat and the dog lay on the rug"
    ids = tok(gt).input_ids
    assert ids[0] == tok.bos_token_id and len(ids) > 6
    short = tok.decode(ids[:6], skip_special_tokens=True)  # BOS counts among the 6, as in MUSE
    monkeypatch.setattr(muse, "greedy_generate", lambda m, t, prompts, n, **kw: [short, "dog rug"])
    recs = [{"prompt": "p1", "gt": gt}, {"prompt": "p2", "gt": gt}]
    items = ev.verbmem_details(None, tok, recs, max_new_tokens=6)
    assert items[0]["gt"] == short and items[0]["rougeL"] == 1.0
    expected2 = muse.rouge_l(short, "dog rug")[0]
    assert ev.verbmem_scores(None, tok, recs, max_new_tokens=6) == pytest.approx([100.0, 100 * expected2])
    assert ev.verbmem(None, tok, recs, max_new_tokens=6) == pytest.approx(100 * (1 + expected2) / 2)


# ----------------------------------------------------------------------------- multiple choice
QUESTIONS = [
    {"question": "Which is a cell? ", "choices": ["cat", "mat", "rug", "dog"], "answer": 2},
    {"question": "Which is a gene?", "choices": ["A1", "B2", "C3", "D4"], "answer": 2},
    {"question": "Pick one", "choices": ["w", "x", "y", "z"], "answer": 0},
    {"question": "Pick two", "choices": ["w", "x", "y", "z"], "answer": 1},
]


def test_mc_prompt_matches_lm_eval_template():
    p = ev.mc_prompt(" What? ", ["a", "b", "c", "d"], "college_biology")
    assert p == ("The following are multiple choice questions (with answers) about college biology.\n\n"
                 "What?\nA. a\nB. b\nC. c\nD. d\nAnswer:")


@pytest.mark.parametrize("single_token", [True, False])
def test_mc_accuracy_with_known_preference(single_token):
    tk = make_tok() if single_token else make_tok(259, bos=False)  # bytes only: " C" is 2 tokens
    cont = tk("Answer: C").input_ids[len(tk("Answer:").input_ids):]
    assert len(cont) == (1 if single_token else 2)
    model = Favour(len(tk), [cont[-1]])
    # prefers C everywhere: right on questions 0 and 1 only
    assert ev.mc_accuracy(model, tk, QUESTIONS, "biology", batch_size=3) == 50.0
    assert ev.mc_correct(model, tk, QUESTIONS, "biology") == [True, True, False, False]
    lls = ev.mc_predictions(model, tk, QUESTIONS[:1], "biology")[0]
    assert max(range(4), key=lambda i: lls[i]) == 2
    # single-token continuations share one forward per question: 4 questions, batch 3 -> 2 calls
    if single_token:
        assert model.calls == 2 + 1 + 1


def test_mc_uses_record_subject_and_tie_goes_to_first(tok):
    model = Favour(len(tok), [])  # uniform: all four tie -> A (answer 0 only)
    qs = [dict(q, subject="high_school_biology") for q in QUESTIONS]
    assert ev.mc_accuracy(model, tok, qs) == 25.0
    with pytest.raises(ValueError, match="subject"):
        ev.mc_accuracy(model, tok, QUESTIONS)


@pytest.mark.slow
def test_mc_loglikelihoods_equal_direct_scoring_on_tiny_llama():
    for tk in (make_tok(), make_tok(259, bos=False)):
        model = tiny_llama(tk, max_pos=256)
        got = ev.mc_predictions(model, tk, QUESTIONS[:2], "biology", batch_size=2)
        for q, lls in zip(QUESTIONS[:2], got):
            ctx = ev.mc_prompt(q["question"], q["choices"], "biology")
            ctx_ids = tk(ctx).input_ids
            for ci, letter in enumerate("ABCD"):
                cont = tk(ctx + " " + letter).input_ids[len(ctx_ids):]
                seq = torch.tensor([ctx_ids + cont])
                with torch.no_grad():
                    lp = torch.log_softmax(model(seq).logits[0], -1)
                direct = sum(lp[len(ctx_ids) - 1 + j, t].item() for j, t in enumerate(cont))
                assert lls[ci] == pytest.approx(direct, abs=1e-4)


# ----------------------------------------------------------------------------- real generation / scoring
def test_batched_left_padded_generation_equals_one_at_a_time(tok):
    model = tiny_llama(tok)
    prompts = ["The cat", "Question: What is the capital of France?\nAnswer:", "the dog lay on",
               "Answer: B and the mat"]
    one = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=1)
    batched = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=4)
    assert one == batched
    assert all(isinstance(s, str) for s in one)
    assert model.training is False


def test_generation_truncates_long_prompts_from_left(tok):
    model = tiny_llama(tok, max_pos=32)
    long_prompt = " ".join(["the cat sat on the mat"] * 20)
    ids = tok(long_prompt).input_ids
    assert len(ids) > 32
    kept = truncate_left(ids, 32 - 8, tok.bos_token_id)
    assert len(kept) == 24 and kept[0] == tok.bos_token_id and kept[1:] == ids[-23:]
    out = greedy_generate(model, tok, [long_prompt], max_new_tokens=8)
    with torch.no_grad():
        ref = model.generate(torch.tensor([kept]), attention_mask=torch.ones(1, 24, dtype=torch.long),
                             max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    assert out == [tok.decode(ref[0, 24:], skip_special_tokens=True)]
    with pytest.raises(ValueError, match="no room"):
        greedy_generate(model, tok, ["x"], max_new_tokens=32)
    # verbmem end to end on the real model, prompt longer than the context
    score = ev.verbmem(model, tok, [{"prompt": long_prompt, "gt": "the cat sat"}], max_new_tokens=8)
    assert 0.0 <= score <= 100.0


def test_mink_scores_batched_equal_manual(tok):
    model = tiny_llama(tok)
    texts = ["the cat sat on the mat", "Answer: A", "the dog lay on the rug and the cat sat on the mat"]
    scores = ev.mink_scores(model, tok, texts, k=0.4, batch_size=2)
    for text, s in zip(texts, scores):
        ids = tok(text).input_ids
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        manual = [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]
        assert s == pytest.approx(ev.mink_from_logprobs(manual, 0.4), abs=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        ev.mink_scores(model, tok, [""])
