"""Chapter 8: a tiny but real language model to do RLHF on.

Everything the RLHF chapter needs before preferences enter the picture lives here:

* a corpus the project writes itself: short templated product/film/restaurant reviews
  ("the pasta was really fresh but the service felt slow . loved it ."), positive, negative
  or mixed, 171 distinct words;
* a word-level vocabulary (``Vocab``) with ``<pad>``, ``<bos>`` and ``<eos>``;
* ``TinyLM``: a 2-layer causal transformer with a language-model head and a value head (the
  value head is unused during supervised training and becomes PPO's critic later);
* ``generate``: sampling with the log-prob of every sampled token, right-padded after ``<eos>``;
* ``train_sft``: supervised next-token training on the corpus, giving the SFT policy that RLHF
  starts from and stays close to;
* ``load_sft_model``: the shipped weights ``ppo_lab/data/tiny_lm.pt`` (made by
  ``scripts/train_tiny_lm.py``), or a fresh training run of well under a minute if the file is
  missing.

Shapes: B = batch of sequences, P = prompt length, L = response length (generated tokens),
T = P + L, V = vocabulary size, D = model width.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS_PATH = Path(__file__).parents[1] / "data" / "tiny_lm.pt"

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
_NOT_GENERATED = torch.tensor([0, 1])  # ids of <pad> and <bos>, see Vocab

# ---------------------------------------------------------------------------------------------
# The corpus: a small grammar of reviews
# ---------------------------------------------------------------------------------------------

# What is reviewed, the phrase that names it, and the parts a reviewer comments on.
TOPICS = {
    "film": ["acting", "plot", "ending", "soundtrack", "dialogue", "pacing", "cast", "script",
             "villain", "humour", "cinematography", "costumes"],
    "restaurant": ["food", "service", "pasta", "soup", "dessert", "staff", "wine", "menu",
                   "bread", "decor", "waiter", "pizza"],
    "hotel": ["room", "bed", "view", "breakfast", "pool", "lobby", "shower", "location",
              "reception", "wifi", "balcony", "spa"],
    "phone": ["battery", "screen", "camera", "speaker", "charger", "case", "keyboard", "app",
              "sound", "design", "microphone", "software"],
    "book": ["prose", "chapters", "characters", "narrator", "cover", "translation", "twist",
             "world", "author", "ending", "pacing", "dialogue"],
}
POSITIVE = ["great", "superb", "wonderful", "excellent", "lovely", "brilliant", "charming",
            "delightful", "fantastic", "fresh", "clever", "moving", "gorgeous", "perfect", "solid",
            "elegant", "friendly", "tasty", "smooth", "crisp", "warm", "stunning", "impressive",
            "pleasant", "amazing", "beautiful", "enjoyable", "generous", "comfortable", "memorable"]
NEGATIVE = ["awful", "dull", "boring", "terrible", "bland", "clumsy", "weak", "poor", "cold",
            "slow", "noisy", "cheap", "dirty", "stale", "rude", "messy", "tedious", "flat",
            "horrible", "disappointing", "broken", "greasy", "cramped", "confusing", "forgettable",
            "annoying", "lifeless", "shallow", "sloppy", "overpriced"]
NEUTRAL = ["long", "short", "simple", "loud", "quiet", "okay", "average", "ordinary", "unusual",
           "modern"]
VERBS = ["was", "felt", "seemed", "looked"]
ADVERBS = ["really", "very", "quite", "truly", "rather", "pretty", "so"]
OPENERS = [["honestly", ","], ["overall", ","], ["i", "think"], ["to", "be", "fair", ","],
           ["well", ","]]
POSITIVE_CLOSERS = [["loved", "it", "."], ["highly", "recommended", "."], ["five", "stars", "."],
                    ["we", "will", "be", "back", "."]]
NEGATIVE_CLOSERS = [["avoid", "it", "."], ["one", "star", "."], ["never", "again", "."],
                    ["what", "a", "waste", "."]]


def _clause(rng: random.Random, nouns: list[str], adjectives: list[str]) -> list[str]:
    """``the <noun> <verb> [adverb] <adjective>``, consuming one noun and one adjective so a
    review never names the same part or uses the same adjective twice."""
    words = ["the", nouns.pop(), rng.choice(VERBS)]
    if rng.random() < 0.4:
        words.append(rng.choice(ADVERBS))
    return words + [adjectives.pop()]


def generate_review(rng: random.Random) -> list[str]:
    """One review as a list of words (no special tokens).

    A review is positive, negative or mixed. Same-sentiment clauses are joined with "and",
    a mixed review turns with "but"; positive and negative reviews may end with a closer
    ("loved it .", "never again ."). About 5-25 words.
    """
    topic = rng.choice(sorted(TOPICS))
    nouns = rng.sample(TOPICS[topic], k=3)
    mood = rng.choice(["positive", "negative", "mixed"])
    pos, neg, neutral = rng.sample(POSITIVE, k=3), rng.sample(NEGATIVE, k=3), rng.sample(NEUTRAL, k=1)
    if mood == "mixed":
        first, second = (pos, neg) if rng.random() < 0.5 else (neg, pos)
    else:
        first = second = pos if mood == "positive" else neg

    words: list[str] = []
    if rng.random() < 0.3:
        words += rng.choice(OPENERS)
    if rng.random() < 0.1:  # a neutral remark first, so not every adjective carries sentiment
        words += _clause(rng, nouns, neutral) + ["and"]
    words += _clause(rng, nouns, first)
    n_more = rng.choice([0, 1, 1]) if mood != "mixed" else 1
    for _ in range(n_more):
        words += ["but" if second is not first else "and"] + _clause(rng, nouns, second)
    words.append(".")
    if mood != "mixed" and rng.random() < 0.5:
        words += rng.choice(POSITIVE_CLOSERS if mood == "positive" else NEGATIVE_CLOSERS)
    return words


def generate_corpus(n_reviews: int, seed: int = 0) -> list[list[str]]:
    """``n_reviews`` reviews from the grammar, reproducible from ``seed``."""
    rng = random.Random(seed)
    return [generate_review(rng) for _ in range(n_reviews)]


def grammar_words() -> list[str]:
    """Every word the grammar can produce, sorted: the vocabulary does not depend on a sample."""
    words = {"the", "and", "but", "."} | set(POSITIVE) | set(NEGATIVE) | set(NEUTRAL)
    words |= set(VERBS) | set(ADVERBS)
    for nouns in TOPICS.values():
        words |= set(nouns)
    for phrase in OPENERS + POSITIVE_CLOSERS + NEGATIVE_CLOSERS:
        words |= set(phrase)
    return sorted(words)


class Vocab:
    """Word <-> id. Ids 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``."""

    def __init__(self, words: list[str] | None = None):
        self.itos = [PAD, BOS, EOS] + (grammar_words() if words is None else list(words))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad, self.bos, self.eos = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: list[str]) -> list[int]:
        unknown = [w for w in words if w not in self.stoi]
        if unknown:
            raise ValueError(f"words not in the vocabulary: {unknown[:5]}")
        return [self.stoi[w] for w in words]

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """Ids (list or 1-D tensor) to text; stops at ``<eos>``, skips ``<pad>`` and ``<bos>``."""
        words = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == self.eos and stop_at_eos:
                break
            if i not in (self.pad, self.bos):
                words.append(self.itos[i])
        return " ".join(words)


def encode_corpus(reviews: list[list[str]], vocab: Vocab, max_len: int) -> torch.Tensor:
    """``[N, max_len]`` long tensor: ``<bos> words <eos>`` right-padded with ``<pad>``."""
    out = torch.full((len(reviews), max_len), vocab.pad, dtype=torch.long)
    for i, words in enumerate(reviews):
        ids = [vocab.bos] + vocab.encode(words) + [vocab.eos]
        if len(ids) > max_len:
            raise ValueError(f"review {i} has {len(ids)} tokens, more than max_len={max_len}")
        out[i, : len(ids)] = torch.tensor(ids)
    return out


# ---------------------------------------------------------------------------------------------
# The model: a 2-layer causal transformer with a value head
# ---------------------------------------------------------------------------------------------


class _Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x MLP, both residual."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, past: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """``x [B, t, D]`` -> ``(x [B, t, D], (keys, values))``.

        ``past``: keys/values of the earlier positions (from a previous call), for generating
        one token at a time without recomputing the prefix; then ``t`` must be 1.
        """
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # is_causal: token t sees tokens <= t only. Padding is always on the right, after
        # <eos>, so no real token ever attends to it and no padding mask is needed. A single
        # new token (past given) may see everything before it: no mask at all.
        att = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x)), (k, v)


class TinyLM(nn.Module):
    """Causal transformer language model with a value head.

    ``forward(tokens [B, T]) -> (logits [B, T, V], values [B, T])``: ``logits[:, t]`` is the
    distribution of token t + 1 given tokens 0..t, and ``values[:, t]`` is the critic's estimate
    of the return from that same point on (used only by PPO).
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 32):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                           n_heads=n_heads, max_len=max_len)
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size)
        self.value_head = nn.Linear(d_model, 1)
        # A zero value head predicts 0 everywhere at the start of RLHF instead of noise.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def hidden(self, tokens: torch.Tensor, cache: list | None = None) -> tuple[torch.Tensor, list]:
        """``[B, t]`` token ids -> ``([B, t, D]`` final hidden states, per-layer key/value cache).

        With ``cache`` from an earlier call, ``tokens`` are the next position(s) after it.
        """
        start = 0 if cache is None else cache[0][0].shape[2]
        if start + tokens.shape[1] > self.max_len:
            raise ValueError(f"tokens reach length {start + tokens.shape[1]}, the model takes at most {self.max_len}")
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.norm(x), new_cache

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[..., V]`` from hidden states ``[..., D]``."""
        # <pad> and <bos> are never the next token. Ruling them out here (finite, so that
        # 0 * logit stays 0) keeps every sampled sequence ending in <eos> or at the length limit.
        return self.lm_head(h).index_fill(-1, _NOT_GENERATED.to(h.device), -1e9)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.hidden(tokens)
        return self.logits(h), self.value_head(h).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Sampling and scoring responses
# ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """A batch of responses sampled from a policy.

    prompts ``[B, P]``; responses ``[B, L]`` (``<pad>`` after ``<eos>``); logprobs ``[B, L]``
    log pi(token) under the sampling policy (0 at padding); mask ``[B, L]`` float, 1 for every
    generated token up to and including ``<eos>``, 0 for padding.
    """

    prompts: torch.Tensor
    responses: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor

    @property
    def sequences(self) -> torch.Tensor:
        """``[B, P + L]`` prompt followed by response."""
        return torch.cat([self.prompts, self.responses], dim=1)


@torch.no_grad()
def generate(model: TinyLM, prompts: torch.Tensor, max_new_tokens: int, vocab: Vocab,
             temperature: float = 1.0, generator: torch.Generator | None = None) -> Samples:
    """Sample up to ``max_new_tokens`` tokens after each prompt.

    A sequence stops at its first ``<eos>`` (which counts as a generated token: ending is a
    decision the policy makes and gets credit for); later positions are ``<pad>`` with mask 0.
    The keys/values of earlier positions are cached, so each step runs one new position
    through the model instead of the whole prefix.

    Args:
        prompts: ``[B, P]`` token ids (no padding; every prompt has the same length P).
        max_new_tokens: L, with P + L <= the model's max_len.
        temperature: divides the logits; 1.0 samples the policy itself, and only then are the
            returned logprobs the policy's log-probs.
    """
    if prompts.dim() != 2:
        raise ValueError(f"prompts must be [B, P], got shape {list(prompts.shape)}")
    if prompts.shape[1] + max_new_tokens > model.max_len:
        raise ValueError(f"prompt length {prompts.shape[1]} + max_new_tokens {max_new_tokens} "
                         f"exceeds the model's max_len {model.max_len}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = prompts.shape[0]
    tokens = []
    logprobs = torch.zeros(b, max_new_tokens)
    mask = torch.zeros(b, max_new_tokens)
    finished = torch.zeros(b, dtype=torch.bool)
    h, cache = model.hidden(prompts)
    for t in range(max_new_tokens):
        log_p = F.log_softmax(model.logits(h[:, -1]) / temperature, dim=-1)
        token = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)
        token = torch.where(finished, torch.full_like(token, vocab.pad), token)
        logprobs[:, t] = torch.where(finished, 0.0, log_p.gather(1, token[:, None]).squeeze(1))
        mask[:, t] = (~finished).float()
        finished = finished | (token == vocab.eos)
        tokens.append(token)
        if finished.all():
            logprobs, mask = logprobs[:, : t + 1], mask[:, : t + 1]
            break
        h, cache = model.hidden(token[:, None], cache)
    return Samples(prompts, torch.stack(tokens, dim=1), logprobs, mask)


def response_logprobs(model: TinyLM, prompts: torch.Tensor, responses: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of given response tokens and the values of the states they were chosen in.

    The logits at position P - 1 + t predict response token t, so both outputs are read from
    there. Differentiable (call under ``torch.no_grad()`` for the frozen reference model).

    Returns:
        ``(logprobs [B, L], values [B, L])``; entries at padding positions are meaningless and
        must be masked by the caller.
    """
    p = prompts.shape[1]
    logits, values = model(torch.cat([prompts, responses], dim=1))
    logits, values = logits[:, p - 1 : -1], values[:, p - 1 : -1]
    logprobs = F.log_softmax(logits, dim=-1).gather(2, responses[:, :, None]).squeeze(2)
    return logprobs, values


def sample_prompts(n: int, vocab: Vocab, seed: int, n_words: int = 2) -> torch.Tensor:
    """``[n, 1 + n_words]`` prompts: ``<bos>`` and the first words of fresh corpus reviews
    (e.g. "the pasta", "honestly ,"). A different seed from the training corpus's gives
    prompts the model has not seen verbatim."""
    reviews = generate_corpus(n, seed=seed)
    return torch.tensor([[vocab.bos] + vocab.encode(r[:n_words]) for r in reviews])


# ---------------------------------------------------------------------------------------------
# Supervised fine-tuning (here: training from scratch) on the corpus
# ---------------------------------------------------------------------------------------------

#: Everything ``train_sft`` needs to rebuild the shipped model exactly (see scripts/train_tiny_lm.py).
SFT_CONFIG = dict(n_reviews=20000, corpus_seed=0, torch_seed=0, steps=600, batch_size=96, lr=3e-3,
                  d_model=64, n_layers=2, n_heads=4, max_len=32)


def corpus_nll(model: TinyLM, tokens: torch.Tensor) -> float:
    """Mean next-token negative log-likelihood (nats/token) on ``[N, T]`` corpus tokens,
    padding excluded."""
    with torch.no_grad():
        logits, _ = model(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=0).item()


def train_sft(config: dict | None = None, progress: bool = False) -> tuple[TinyLM, Vocab, dict]:
    """Train a ``TinyLM`` on the generated corpus with next-token cross-entropy.

    Deterministic for a given config and torch thread count. Returns the model (eval mode),
    its vocabulary and a log dict with the held-out NLL and the training time.
    """
    cfg = dict(SFT_CONFIG, **(config or {}))
    vocab = Vocab()
    torch.manual_seed(cfg["torch_seed"])
    data = encode_corpus(generate_corpus(cfg["n_reviews"], seed=cfg["corpus_seed"]), vocab, cfg["max_len"])
    held_out = encode_corpus(generate_corpus(1000, seed=cfg["corpus_seed"] + 1), vocab, cfg["max_len"])
    # Trim columns that are padding in every row: shorter sequences, same loss.
    width = int((data != vocab.pad).sum(1).max())
    data = data[:, :width]
    model = TinyLM(len(vocab), cfg["d_model"], cfg["n_layers"], cfg["n_heads"], cfg["max_len"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    # Cosine decay to 0: the last steps polish instead of bouncing around at a high lr.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg["steps"])))
    gen = torch.Generator().manual_seed(cfg["torch_seed"])
    start = time.perf_counter()
    model.train()
    for step in range(cfg["steps"]):
        batch = data[torch.randint(len(data), (cfg["batch_size"],), generator=gen)]
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1), ignore_index=vocab.pad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % 200 == 0 or step == cfg["steps"] - 1):
            print(f"step {step:5d}  train loss {loss.item():.3f}")
    model.eval()
    log = dict(held_out_nll=corpus_nll(model, held_out[:, :width]), seconds=time.perf_counter() - start)
    return model, vocab, log


def save_sft_model(model: TinyLM, vocab: Vocab, path: Path | str = WEIGHTS_PATH, extra: dict | None = None) -> None:
    """Weights + config + vocabulary in one file loadable with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(dict(config=model.config, vocab=vocab.itos[3:], state_dict=state, info=extra or {}), path)


def load_sft_model(path: Path | str = WEIGHTS_PATH, verbose: bool = True) -> tuple[TinyLM, Vocab]:
    """The SFT model from ``path``; if the file is missing, train one now (well under a minute).

    The model comes back in eval mode with its parameters trainable; callers that want a
    frozen reference call ``requires_grad_(False)`` on their copy.
    """
    path = Path(path)
    if not path.exists():
        if verbose:
            print(f"{path} not found: training the tiny language model now ...")
        model, vocab, log = train_sft(progress=verbose)
        if verbose:
            print(f"trained in {log['seconds']:.1f} s, held-out NLL {log['held_out_nll']:.3f} nats/token")
        return model, vocab
    blob = torch.load(path, weights_only=True)
    vocab = Vocab(blob["vocab"])
    model = TinyLM(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, vocab
