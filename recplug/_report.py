"""An HTML page showing a user's history beside the recommendations, as cards (posters when available)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ._data import FeatureKind

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; background: #fafafa; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 0 0 8px; }
.columns { display: flex; gap: 32px; align-items: flex-start; }
.column { flex: 1; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { width: 150px; background: white; border: 1px solid #ddd; border-radius: 8px; padding: 8px; }
.card img { width: 100%; border-radius: 4px; }
.poster { height: 90px; border-radius: 4px; background: #3b5b92; color: white; display: flex; align-items: center;
          justify-content: center; font-size: 28px; font-weight: bold; }
.recommended .poster { background: #2e7d4f; }
.title { font-weight: 600; font-size: 13px; margin-top: 6px; }
.meta { font-size: 12px; color: #666; }
"""


def render_report(title: str, history: list[dict[str, Any]], recommendations: list[dict[str, Any]],
                  kinds: dict[str, FeatureKind], posters: Path | None = None) -> str:  # fmt: skip
    """A self-contained HTML page; posters are embedded from ``posters/<item_id>.jpg`` (or .png) when present.

    Items are records (``item_id``, optional ``score`` and metadata columns); ``kinds`` declares the metadata
    columns: the first text column titles a card, numbers and categories make its first line, lists its second.
    """

    def cards(items: list[dict[str, Any]]) -> str:
        return "\n".join(_card(item, kinds, posters) for item in items)

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<div class="columns">
<div class="column history"><h2>Recent history ({len(history)})</h2><div class="cards">{cards(history)}</div></div>
<div class="column recommended"><h2>Recommended ({len(recommendations)})</h2><div class="cards">{cards(recommendations)}</div></div>
</div></body></html>
"""


def _card(item: dict[str, Any], kinds: dict[str, FeatureKind], posters: Path | None) -> str:
    texts = [str(item[c]) for c, kind in kinds.items() if kind == "text" and item.get(c) is not None]
    title = texts[0] if texts else f"item {item['item_id']}"
    facts = [str(item[c]) for c, kind in kinds.items() if kind in ("numeric", "categorical") and item.get(c) is not None]
    if "score" in item:
        facts.append(f"score {item['score']:.3f}")
    lists = "; ".join(", ".join(map(str, item[c])) for c, kind in kinds.items() if kind == "multi" and item.get(c))
    image = _poster(item["item_id"], posters)
    picture = f'<img src="{image}" alt="">' if image else f'<div class="poster">{html.escape(title[:1])}</div>'
    return (
        f'<div class="card">{picture}<div class="title">{html.escape(title)}</div>'
        f'<div class="meta">{html.escape(" · ".join(facts))}</div><div class="meta">{html.escape(lists)}</div></div>'
    )


def _poster(item_id: int, posters: Path | None) -> str | None:
    if posters is None:
        return None
    for suffix, mime in ((".jpg", "image/jpeg"), (".png", "image/png")):
        path = posters / f"{item_id}{suffix}"
        if path.is_file():
            return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
    return None
