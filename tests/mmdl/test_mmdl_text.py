"""Report encoders: TF-IDF against scikit-learn, checkpoint round trip, local HF loading."""

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from radsearch.errors import ConfigError
from radsearch.models.text import TfidfMLPEncoder, build_text_encoder

REPORTS = ["FINDINGS: Small left pleural effusion. IMPRESSION: Left effusion.",
           "FINDINGS: The heart is enlarged. No pneumothorax. IMPRESSION: Cardiomegaly.",
           "FINDINGS: Lungs are clear. IMPRESSION: No acute cardiopulmonary process.",
           "FINDINGS: Right pneumothorax. IMPRESSION: Right pneumothorax."]


def test_tfidf_features_equal_scikit_learn_and_round_trip():
    enc = build_text_encoder("tfidf", REPORTS, out_dim=8, hidden=16)
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(REPORTS)
    queries = ["small right pleural effusion", "enlarged heart, no effusion"]
    expected = reference.transform(queries).toarray()
    got = enc.tfidf(queries).numpy()
    # same vocabulary (bigrams included) and the same values per term
    assert enc.vectorizer.vocabulary_ == reference.vocabulary_
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert "pleural effusion" in enc.vectorizer.vocabulary_  # word bigrams
    enc.eval()
    out = enc(queries)
    assert out.shape == (2, 8)

    clone = TfidfMLPEncoder(out_dim=8, hidden=16)
    state = enc.state_dict()
    clone.set_extra_state(state["_extra_state"])   # rebuilds vectorizer + MLP shapes
    clone.load_state_dict(state)
    clone.eval()
    torch.testing.assert_close(clone(queries), out)


def test_tfidf_needs_some_report_text():
    with pytest.raises(ConfigError, match="no training report has text"):
        build_text_encoder("tfidf", ["", "  "])


def test_unknown_encoder_is_one_line():
    with pytest.raises(ConfigError) as info:
        build_text_encoder("word2vec")
    assert "\n" not in str(info.value) and "tfidf" in str(info.value)


def test_scratch_bert_fits_vocabulary_and_trains():
    pytest.importorskip("transformers")
    enc = build_text_encoder("bert-scratch", REPORTS, vocab_size=120, hidden=16, layers=1,
                             heads=2, max_length=24, pooling="mean")
    ids = enc.tokenizer("pleural effusion")["input_ids"]
    assert enc.tokenizer.unk_token_id not in ids  # words of the training reports are in vocab
    out = enc(REPORTS[:2])
    assert out.shape == (2, 16)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def _tiny_checkpoint(folder):
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "small", "left", "pleural",
             "effusion", "heart", "is", "enlarged", "."]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16,
                                     max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer, model


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_hf_local_checkpoint_matches_direct_model(tmp_path, pooling):
    tokenizer, model = _tiny_checkpoint(tmp_path)
    texts = ["small left pleural effusion .", "heart is enlarged"]
    enc = build_text_encoder(f"hf:{tmp_path}", pooling=pooling, max_length=16)
    enc.eval()
    model.eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        if pooling == "cls":
            expected = hidden[:, 0]
        else:  # masked mean by hand: padding positions excluded
            n = batch["attention_mask"].sum(1)
            expected = torch.stack([hidden[i, :n[i]].mean(0) for i in range(len(texts))])
        got = enc(texts)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert enc.out_dim == 8 and enc.describe()["trust_remote_code"] is False


def test_hf_missing_path_is_one_clear_line(tmp_path):
    pytest.importorskip("transformers")
    missing = tmp_path / "Bio_ClinicalBERT"
    with pytest.raises(ConfigError) as info:
        build_text_encoder(f"hf:{missing}")
    message = str(info.value)
    assert "\n" not in message and str(missing) in message and "never contacted" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        build_text_encoder(f"hf:{tmp_path / 'empty'}")
