"""The optional semantic near-duplicate layer in the contamination step (issue 17, defect 3).

Datasets are pushed through the service with real files and analysed by the real contamination step with
the real embedding model (the ``semantic`` extra, which ``make test`` installs). The "generated" records and
their paraphrases below were written for this test; the unrelated human text is the Python documentation.
"""

from __future__ import annotations

import json
import pydoc_data.topics
from pathlib import Path

from sqlalchemy import select

from registry.artifacts.models import Version
from registry.core.context import RegistryContext
from registry.policy import documents
from registry.synthetic.contamination import analyse
from registry.synthetic.models import ContaminationResult, SyntheticEmbedding
from registry.synthetic.provenance import fingerprint_summary
from tests.registry.test_detector_calibration import context, push_dataset
from tests.support.service import Reg, edge

GENERATED = [
    "Sourdough bread relies on a culture of wild yeast and lactic acid bacteria instead of commercial yeast. "
    "The baker feeds the starter with flour and water for several days until it bubbles reliably, then mixes "
    "a portion into the dough. Long fermentation develops the sour flavour, an open crumb and a crust that "
    "stays crisp, while the acidity also slows staling so the loaf keeps for days.",
    "Honeybees communicate the location of flowers through the waggle dance performed inside the hive. The "
    "angle of the run relative to vertical encodes the direction of the food source with respect to the sun, "
    "and the duration of the waggle phase tells the other foragers how far they must fly. Scent carried on "
    "the dancer's body helps recruits recognise the right blossoms when they arrive.",
    "Glaciers form where winter snowfall exceeds summer melting for many years, so that layers of snow are "
    "compressed into dense blue ice. Under their own weight they flow slowly downhill, plucking rocks from "
    "the bedrock and grinding the valley floor. When the climate warms the ice front retreats and leaves "
    "behind moraines, polished rock surfaces and lakes that fill the carved basins.",
    "Tidal power stations capture energy from the rise and fall of the sea. A barrage across an estuary "
    "holds water back at high tide and releases it through turbines as the tide goes out, while newer "
    "designs place underwater rotors in fast coastal currents. Because tides follow the moon, their output "
    "can be predicted years ahead, unlike wind or solar generation.",
]
# Rewritten sentence by sentence (0 and 2), and sentences reversed with 30 % of the words edited (3): few word
# 3-grams survive, so the fingerprint layer finds none of them.
REWRITTEN = [
    "Instead of using commercial yeast, sourdough bread depends on a starter culture of wild yeasts and "
    "lactic acid bacteria. For several days bakers feed this starter with water and flour until it bubbles "
    "dependably, and then a part of it goes into the dough. The long fermentation gives the loaf its sour "
    "taste, an open crumb and a crisp crust, and because of the acidity the bread also goes stale more slowly "
    "and lasts for days.",
    "When snowfall in winter is greater than melting in summer for many years, glaciers form as the layers "
    "of snow get squeezed into dense, blue ice. Their own weight makes them creep downhill, tearing rocks "
    "out of the bedrock and grinding down the floor of the valley. As the climate becomes warmer, the front "
    "of the ice pulls back, leaving moraines, polished rock and lakes filling the basins it carved.",
    "so Because tides follow the moon, their output can be predicted years so unlike quite or solar generation. "
    "A barrage across an estuary holds very water back at high tide and releases also it through turbines the "
    "tide quite while designs place underwater rotors in fast very Tidal power really stations thus so energy "
    "from the rise and really fall the sea.",
]


def human_paragraphs(n: int) -> list[str]:
    """Human text on another subject: paragraphs of the Python Language Reference (pydoc_data)."""
    paragraphs = [" ".join(p.split()) for text in pydoc_data.topics.topics.values() for p in text.split("\n\n")]
    return [p for p in paragraphs if len(p.split()) >= 40][:n]


def result(reg: Reg, version_id: int) -> ContaminationResult:
    with reg.session() as s:
        row = s.get(ContaminationResult, version_id)
        assert row is not None
        s.expunge(row)
        return row


def registered_ordinals(reg: Reg, version_id: int) -> list[int]:
    with reg.session() as s:
        return sorted(s.scalars(select(SyntheticEmbedding.ordinal).where(SyntheticEmbedding.version_id == version_id)))


def generated(reg: Reg, ctx: RegistryContext, namespace: str, marked_human: list[str]) -> int:
    """A model and the dataset it generated: GENERATED, with ``marked_human`` records (mir_origin: human) after."""
    push_dataset(reg, f"{namespace}/m@1", [], kind="model")
    rows = [{"text": t} for t in GENERATED] + [{"text": t, "mir_origin": "human"} for t in marked_human]
    vid = push_dataset(reg, f"{namespace}/gen@1", rows, edge("generated_by", f"{namespace}/m@1"))
    analyse(ctx, vid)
    return vid


def test_rewritten_copies_match_semantically_in_scope_only(reg: Reg, tmp_path: Path) -> None:
    on = context(reg, tmp_path, synthetic_semantic=True)
    human = human_paragraphs(5)
    gen = generated(reg, on, "sem", marked_human=human[:2])
    # Only the records the fingerprint layer registers as synthetic get a vector: not those marked human.
    assert registered_ordinals(reg, gen) == [0, 1, 2, 3]
    assert result(reg, gen).report["semantic"]["registered"] == 4
    with reg.session() as s:
        documents.set_policy(s, "sem", documents.parse_policy({"max_synthetic_fraction": 0.2}), "admin")

    # Rewritten copies, the marked-human records again (never registered: not matched) and unrelated human text.
    rows = [{"text": t} for t in REWRITTEN + human]
    copy = push_dataset(reg, "sem/copy@1", rows)
    analyse(on, copy)
    row = result(reg, copy)
    assert row.report["fingerprint"]["matched_records"] == 0 and row.matched_fraction == 0.0
    semantic = row.report["semantic"]
    assert semantic["matched_records"] == 3 and semantic["scored_records"] == 8, semantic
    assert semantic["per_dataset"] == {"sem/gen@1": 3} and semantic["threshold"] == 0.91
    assert semantic["false_match_rate"]["at_threshold"] == 0.91 and semantic["false_match_rate"]["human_records"] > 0
    # More than the 20 % limit matched semantically: suspicious, and never more than that.
    assert row.verdict == "suspicious"
    assert any(f["rule"] == "synthetic-semantic-match" and f["severity"] == "suspicious"
               for f in row.report["findings"])

    # Another tenant holding the same records is not matched against this namespace's vectors...
    rival = push_dataset(reg, "rival/copy@1", rows)
    analyse(on, rival)
    rival_row = result(reg, rival)
    assert rival_row.report["semantic"]["matched_records"] == 0
    assert rival_row.report["semantic"]["registered_vectors"] == 0 and rival_row.verdict == "clean"
    # ... unless the registry matches across namespaces, and then the names stay hidden from the rival.
    analyse(context(reg, tmp_path, synthetic_semantic=True, synthetic_match_scope="registry"), rival)
    with reg.session() as s:
        version = s.get(Version, rival)
        assert version is not None
        shown = fingerprint_summary(s, version, lambda namespace: namespace == "rival")
    assert shown is not None and shown["semantic"]["matched_records"] == 3
    assert shown["semantic"]["per_dataset"] == {"hidden": 3}, shown["semantic"]
    assert "sem/" not in json.dumps(shown)


def test_layer_off_leaves_the_result_as_it_was(reg: Reg, tmp_path: Path) -> None:
    off = context(reg, tmp_path)
    gen = generated(reg, off, "plain", marked_human=[])
    assert registered_ordinals(reg, gen) == [] and "semantic" not in result(reg, gen).report
    copy = push_dataset(reg, "plain/copy@1", [{"text": t} for t in REWRITTEN + human_paragraphs(3)])
    with reg.session() as s:
        documents.set_policy(s, "plain", documents.parse_policy({"max_synthetic_fraction": 0.2}), "admin")
    analyse(off, copy)
    before = result(reg, copy)
    assert before.verdict == "clean" and set(before.report) == {"fingerprint", "findings", "text_field"}

    # The same data with the layer on: the fingerprint part is identical, the semantic section comes on top (but
    # the generated dataset was analysed with the layer off, so it has no vectors to match yet).
    on = context(reg, tmp_path, synthetic_semantic=True)
    analyse(on, copy)
    after = result(reg, copy)
    assert after.report["fingerprint"] == before.report["fingerprint"]
    assert after.report["semantic"]["registered_vectors"] == 0 and after.verdict == "clean"
    analyse(on, gen)
    assert registered_ordinals(reg, gen) == [0, 1, 2, 3]
    analyse(on, copy)
    assert result(reg, copy).report["semantic"]["matched_records"] == 3 and result(reg, copy).verdict == "suspicious"
