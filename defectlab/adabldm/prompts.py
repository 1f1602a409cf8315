"""Prompt encoders: a small learned word embedding (offline model) or SD's CLIP text encoder."""
from __future__ import annotations

import re

import torch
from torch import nn

from .params import PROMPT_TEMPLATE

_PAD, _UNK = 0, 1


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def prompt_for(object_name: str, defect_name: str) -> str:
    """The paper's prompt: "a {object} with a {defect}" (underscores read as spaces)."""
    return PROMPT_TEMPLATE.format(object=object_name.replace("_", " "), defect=defect_name.replace("_", " "))


def vocabulary_for(prompts: list[str]) -> list[str]:
    """Sorted word list of the prompts (the offline model only knows words it was trained on)."""
    return sorted({w for p in prompts for w in words(p)})


class WordPromptEncoder(nn.Module):
    """Learned word + position embeddings: prompt -> (B, max_words, dim). The empty prompt is all padding."""

    def __init__(self, vocabulary: list[str], dim: int, max_words: int = 8):
        super().__init__()
        self.vocabulary = list(vocabulary)
        self.index = {w: i + 2 for i, w in enumerate(self.vocabulary)}
        self.max_words = max_words
        self.words = nn.Embedding(len(self.vocabulary) + 2, dim)
        self.positions = nn.Parameter(torch.zeros(max_words, dim))

    def tokens(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.full((len(prompts), self.max_words), _PAD, dtype=torch.long)
        for i, p in enumerate(prompts):
            seq = [self.index.get(w, _UNK) for w in words(p)][: self.max_words]
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return ids

    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokens(prompts).to(self.positions.device)
        return self.words(ids) + self.positions[None]


class CLIPPromptEncoder(nn.Module):
    """SD's frozen CLIP text encoder (`from_pretrained(path, subfolder="text_encoder")`)."""

    def __init__(self, path: str, revision: str | None = None):
        super().__init__()
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", revision=revision)
        self.text = CLIPTextModel.from_pretrained(path, subfolder="text_encoder",
                                                  revision=revision).eval().requires_grad_(False)

    def forward(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        return self.text(tok.input_ids.to(self.text.device))[0]
