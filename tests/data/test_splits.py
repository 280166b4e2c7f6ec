from miniplm.config import CorpusConfig, PipelineConfig, ReferenceConfig, SplitConfig
from miniplm.data.splits import resolve_split, split_config, split_of
from miniplm.store.hashing import doc_id


def test_membership_is_stable_and_near_the_fractions():
    cfg = SplitConfig(reference_fraction=0.1, heldout_fraction=0.05, seed=3)
    ids = [doc_id(f"document {i}") for i in range(20000)]
    splits = [split_of(d, cfg) for d in ids]
    assert abs(splits.count("reference") / len(ids) - 0.1) < 0.01
    assert abs(splits.count("heldout") / len(ids) - 0.05) < 0.01
    # membership depends only on (seed, doc_id): adding documents moves nobody
    assert [split_of(d, cfg) for d in ids[:100]] == splits[:100]
    other_seed = [split_of(d, cfg.model_copy(update={"seed": 4})) for d in ids]
    assert other_seed != splits


def test_given_reference_sets_nothing_aside():
    def run(reference: str) -> PipelineConfig:
        return PipelineConfig(
            workdir="w",
            corpus=CorpusConfig(paths=["c.jsonl"]),
            teacher="t",
            reference=ReferenceConfig(spec=reference),
            split=SplitConfig(reference_fraction=0.2),
        )

    assert split_config(run("some/checkpoint")).reference_fraction == 0
    assert split_config(run("train")).reference_fraction == 0.2


def test_d_ref_share_when_none_is_given_grows_for_a_small_corpus_and_is_then_kept():
    auto = SplitConfig()
    small = resolve_split(auto, 150_000, None)
    large = resolve_split(auto, 100_000_000, None)
    middle = resolve_split(auto, 8_000_000, None)
    assert small.reference_fraction == 0.2 and large.reference_fraction == 0.05  # capped both ways
    assert middle.reference_fraction == 0.125  # about 1M tokens of D_ref
    assert small.auto_reference and middle.auto_reference
    # chosen once: a corpus that grew keeps its D_ref share, so no document changes split
    assert resolve_split(auto, 100_000_000, small).reference_fraction == 0.2
    # a share the user gives is used as given, always
    given = SplitConfig(reference_fraction=0.3)
    assert resolve_split(given, 150_000, small) == given
    assert not resolve_split(given, 150_000, None).auto_reference
