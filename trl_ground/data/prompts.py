"""The words of a grounding conversation: system prompt, query templates and the prompt
messages of one query (the image is attached by TRL's collator or by the predictor)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_QUERY",
    "DEFAULT_REFERRING_QUERY",
    "DEFAULT_SYSTEM_PROMPT",
    "describe_object",
    "grounding_prompt",
]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that locates objects in images."
DEFAULT_QUERY = (
    "Locate every {class} in the image. Answer with a JSON list of "
    '{"bbox_2d": [x1, y1, x2, y2], "label": "{class}"} using coordinates from 0 to 1000, or [] if there is none.'
)
DEFAULT_REFERRING_QUERY = (
    'Locate {description} in the image. Answer with a JSON list holding one {"bbox_2d": [x1, y1, x2, y2], '
    '"label": "{class}"} using coordinates from 0 to 1000.'
)


def grounding_prompt(query: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """``[system message, user message]`` of one query."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": query}]


def describe_object(cls: str, size: str | None = None, position: str | None = None) -> str:
    """A referring expression: ``"the small ship at the top left"`` from size, class and position."""
    words = ["the"] + ([size] if size else []) + [cls]
    if position:
        words += ["at the", position]
    return " ".join(words)
